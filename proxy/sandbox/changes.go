package sandbox

import (
	"encoding/json"
	"fmt"
)

// changeEntry is an entry of entry[].changes[], as the feed and the
// Instagram comments webhooks send it: the entry's time in seconds.
type changeEntry struct {
	ID      string   `json:"id"`
	Time    int64    `json:"time"`
	Changes []change `json:"changes"`
}

type change struct {
	Field string          `json:"field"`
	Value json.RawMessage `json:"value"`
}

// PageChange is a change on the page (a comment on a post, a new post, a
// lead form...) as Meta sends it: entry[].changes[] with the field and its
// value, to every app (the field's subscription is per app, and the
// sandbox takes every app as subscribed). It returns the body sent.
func (p *Platform) PageChange(page, field string, value any) ([]byte, error) {
	v, err := json.Marshal(value)
	if err != nil {
		return nil, fmt.Errorf("sandbox: page change value: %w", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.pages[page] {
		return nil, fmt.Errorf("sandbox: unknown page %s", page)
	}
	e := changeEntry{ID: page, Time: p.clk.Now().Unix(), Changes: []change{{Field: field, Value: v}}}
	body, err := json.Marshal(struct {
		Object string        `json:"object"`
		Entry  []changeEntry `json:"entry"`
	}{"page", []changeEntry{e}})
	if err != nil {
		return nil, fmt.Errorf("sandbox: marshal page change: %w", err)
	}
	body = escapeNonASCII(body)
	for _, id := range p.appOrder {
		if a := p.apps[id]; a != nil {
			a.queue = append(a.queue, &delivery{body: body})
			wake(a.wake)
		}
	}
	return body, nil
}
