package token

import "testing"

func TestDuplicateName(t *testing.T) {
	tests := []struct {
		doc, want string
	}{
		{`{"a":1,"b":2}`, ""},
		{`{"a":1,"a":2}`, "a"},
		{`{"username":"alice","exp":1,"username":"root"}`, "username"},
		{`{"o":{"x":1,"x":2}}`, "x"},
		{`{"o":{"x":1},"p":{"x":1}}`, ""},
		{`{"l":[{"x":1},{"x":2}],"y":[1,2,{"z":[]}]}`, ""},
		{`{"l":[{"x":1,"x":2}]}`, "x"},
		{`{"a":"a","b":{"a":{"b":"a"}},"c":[["a"],{"a":1}]}`, ""},
		{`{"s":"{\"a\":1,\"a\":2}"}`, ""},
	}
	for _, tc := range tests {
		got, err := duplicateName([]byte(tc.doc))
		if err != nil {
			t.Fatalf("%s: %v", tc.doc, err)
		}
		if got != tc.want {
			t.Errorf("duplicateName(%s) = %q, want %q", tc.doc, got, tc.want)
		}
	}
}
