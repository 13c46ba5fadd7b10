package token

import "errors"

// errTrailing: a second JSON text, or anything but white space, after the
// first.
var errTrailing = errors.New("data after the JSON object")

// duplicateName returns the first member name that appears twice in one
// object of the JSON document data, at any depth, as parse finds it. Data
// after the document's one JSON text is errTrailing.
func duplicateName(data []byte) (string, error) {
	d := decoder{data: data}
	if _, err := d.value(); err != nil {
		return "", err
	}
	if !onlySpace(data[d.pos:]) {
		return "", errTrailing
	}
	return d.dup, nil
}
