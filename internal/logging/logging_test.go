package logging

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestNew(t *testing.T) {
	var buf bytes.Buffer
	// A buffer is not a terminal: auto means JSON.
	logger, err := New(&buf, "auto", "warn")
	if err != nil {
		t.Fatal(err)
	}
	logger.Info("dropped")
	logger.Warn("kept", "k", "v")
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("auto on a buffer wrote %q, want one JSON record: %v", buf.String(), err)
	}
	if rec["msg"] != "kept" || rec["k"] != "v" {
		t.Errorf("record = %v, want msg kept, k v", rec)
	}

	buf.Reset()
	logger, err = New(&buf, "text", "debug")
	if err != nil {
		t.Fatal(err)
	}
	logger.Debug("hello")
	if !strings.Contains(buf.String(), "msg=hello") {
		t.Errorf("text: %q, want msg=hello", buf.String())
	}

	for _, tt := range []struct{ format, level, flag string }{
		{"yaml", "info", "--log-format"},
		{"json", "loud", "--log-level"},
	} {
		if _, err := New(&buf, tt.format, tt.level); err == nil || !strings.Contains(err.Error(), tt.flag) {
			t.Errorf("New(%q, %q) err = %v, want one naming %s", tt.format, tt.level, err, tt.flag)
		}
	}
}
