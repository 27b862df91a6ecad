// Package faults is Baton's proof suite: tests that cause each fault on
// purpose (Baton killed or stopped under load, the bot down, the Graph API
// failing, the disk full, hostile traffic) and check what the README
// promises, each printing one line of figures that starts with its name.
//
// A short version of every proof runs with the ordinary `go test -race
// ./...`; the full sizes run behind the faults build tag:
//
//	go test -tags faults -timeout 60m ./proxy/faults/
//
// The package holds only tests; this file exists so that it has a
// package and a doc comment.
package faults
