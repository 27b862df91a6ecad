package policies

import (
	"maps"
	"slices"
)

// Pages lists, in order, the pages that have page-specific files (a file
// with pages: at the top). An event of another page is judged by the
// files without pages:, so a tool that does not know an event's page
// (baton explain with one event object) can say which files it could not
// judge it by.
func (s *Set) Pages() []string {
	if s == nil {
		return nil
	}
	return slices.Sorted(maps.Keys(s.pageFiles))
}
