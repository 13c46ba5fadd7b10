package config

import (
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"

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

// KeyError is a bad value in the config: the key path it is at
// ("providers[0].algorithms") and what is wrong with it.
type KeyError struct {
	Key, Msg string
	Line     int   // 0 when not known (the key is not in the file)
	Err      error // the cause, when there is one (a file that cannot be read)
}

// keyError is the KeyError of err at key.
func keyError(key string, err error) *KeyError {
	return &KeyError{Key: key, Msg: err.Error(), Err: err}
}

func (e *KeyError) Unwrap() error { return e.Err }

func (e *KeyError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("line %d: %s: %s", e.Line, e.Key, e.Msg)
	}
	return e.Key + ": " + e.Msg
}

// withLines gives each KeyError in err the line of its key in the
// document doc: the key itself, or, for a value left at its default, the
// nearest enclosing key that is in the file. With doc nil (a Config not
// read by Parse), err is left as it is.
func withLines(doc *yaml.Node, err error) error {
	switch e := err.(type) {
	case interface{ Unwrap() []error }:
		for _, x := range e.Unwrap() {
			withLines(doc, x)
		}
	case *KeyError:
		if doc != nil && e.Line == 0 {
			e.Line = lineOf(doc, e.Key)
		}
	}
	return err
}

// keyPathRE splits a key path into names and [index]es.
var keyPathRE = regexp.MustCompile(`[^.\[\]]+|\[\d+\]`)

// lineOf returns the line of the deepest node of path found in doc.
func lineOf(doc *yaml.Node, path string) int {
	line := doc.Line
	n := doc
	for _, part := range keyPathRE.FindAllString(path, -1) {
		if n.Kind == yaml.AliasNode {
			n = n.Alias
		}
		if strings.HasPrefix(part, "[") {
			i, _ := strconv.Atoi(part[1 : len(part)-1])
			if n.Kind != yaml.SequenceNode || i >= len(n.Content) {
				return line
			}
			n = n.Content[i]
			line = n.Line
			continue
		}
		found := false
		for i := 0; n.Kind == yaml.MappingNode && i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == part {
				line, n, found = n.Content[i].Line, n.Content[i+1], true
				break
			}
		}
		if !found {
			return line
		}
	}
	return line
}
