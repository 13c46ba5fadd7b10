package config

import (
	"fmt"
	"reflect"
	"regexp"

	"go.yaml.in/yaml/v3"
)

// yamlLineRE matches the "line N:" that yaml.v3 puts in most of its errors.
var yamlLineRE = regexp.MustCompile(`\bline \d+\b`)

// withLine gives a YAML error that names no line the first line by which
// the document already fails with the same message. yaml.v3 names no line
// for a problem on the first line, for a control character or invalid UTF-8
// anywhere, and for alias, merge and !!binary problems found while
// decoding; a config error must still say where to look.
func withLine(data []byte, err error) error {
	if err == nil || yamlLineRE.MatchString(err.Error()) {
		return err
	}
	msg := err.Error()
	var ends []int // the end of each line, newline included
	for i, c := range data {
		if c == '\n' {
			ends = append(ends, i+1)
		}
	}
	if len(ends) == 0 || ends[len(ends)-1] != len(data) {
		ends = append(ends, len(data))
	}
	// Binary search for the shortest prefix of whole lines that fails the
	// same way; the whole document does. Parsing is sequential, so once a
	// prefix fails this way the longer ones do too, except where the
	// parser's look-ahead reaches past a line end: any line found is one by
	// which the document fails with this message.
	lo, hi := 0, len(ends)-1
	for lo < hi {
		mid := (lo + hi) / 2
		if e := decodeYAML(data[:ends[mid]], new(Config)); e != nil && e.Error() == msg {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return fmt.Errorf("line %d: %w", hi+1, err)
}

// decodeYAML repeats the YAML steps of Parse (the document, its keys,
// then the values into cfg) on a prefix of the document, for withLine.
func decodeYAML(data []byte, cfg *Config) error {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return err
	}
	if len(root.Content) == 0 {
		return nil
	}
	*cfg = Default()
	if err := checkKeys(root.Content[0], reflect.TypeOf(*cfg), ""); err != nil {
		return err
	}
	if err := root.Content[0].Decode(cfg); err != nil {
		return explainDecode(err)
	}
	return nil
}
