package cli

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/batonproxy/baton/policies"
	"github.com/batonproxy/baton/policies/yamlfile"
)

// Check validates policy files, as the proxy would load them, with apps
// as the app names a pass may use. When they are valid it prints
// "N rules in M files: ok" to out and returns 0; otherwise it prints every
// problem in every file to errOut, one per line as file:line:col: message
// (the form editors and CI annotators pick up), and returns 1.
func Check(out, errOut io.Writer, files []string, apps map[string]string) int {
	// Every file is read, even after one fails to, so a single run
	// reports everything: an unreadable file and problems in the others.
	var unreadable []error
	loaded := make([]policies.File, 0, len(files))
	for _, path := range files {
		data, err := os.ReadFile(path)
		if err != nil {
			unreadable = append(unreadable, err)
			continue
		}
		loaded = append(loaded, policies.File{Name: path, Data: data})
	}
	for _, err := range unreadable {
		fmt.Fprintf(errOut, "baton: cannot read policy file: %v\n", err)
	}

	set, err := policies.Compile(loaded, apps)
	if err != nil {
		var probs yamlfile.Problems
		if errors.As(err, &probs) {
			fmt.Fprintln(errOut, probs.Error())
		} else {
			fmt.Fprintf(errOut, "checking policies: %v\n", err)
		}
		return ExitFail
	}
	if len(unreadable) > 0 {
		return ExitFail
	}
	fmt.Fprintf(out, "%s in %s: ok\n", plural(set.Rules(), "rule", "rules"), plural(len(files), "file", "files"))
	return ExitOK
}
