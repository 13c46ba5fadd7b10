// Package fswatch calls back when files change, as they change in
// Kubernetes: it watches the files' directories, not the files, so an
// editor's save-by-rename and the kubelet's update of a ConfigMap or Secret
// volume (a new timestamped directory, then a ..data_tmp symlink renamed
// over ..data, every file resolving through it) are both seen; bursts of
// events are debounced into one call.
package fswatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Run watches the directories of files() and calls changed once events
// on those files (or on kubelet's ..data links) have been quiet for
// debounce; after each call it watches the directories of files() again,
// which may name other files now. It returns when ctx ends, or when the
// watcher cannot be made.
func Run(ctx context.Context, files func() []string, debounce time.Duration, changed func(), logger *slog.Logger) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch files: %w", err)
	}
	defer w.Close()
	names := rewatch(w, files(), logger)
	var fire <-chan time.Time
	timer := time.NewTimer(debounce)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if !relevant(ev, names) {
				continue
			}
			timer.Reset(debounce)
			fire = timer.C
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			logger.Warn("file watch", "err", err)
		case <-fire:
			fire = nil
			changed()
			names = rewatch(w, files(), logger)
		}
	}
}

// rewatch makes w watch the directories of files, and only those, and
// returns the files' base names.
func rewatch(w *fsnotify.Watcher, files []string, logger *slog.Logger) map[string]bool {
	dirs := map[string]bool{}
	names := map[string]bool{}
	for _, f := range files {
		dirs[filepath.Dir(f)] = true
		names[filepath.Base(f)] = true
	}
	for _, d := range w.WatchList() {
		if !dirs[d] {
			_ = w.Remove(d)
		}
	}
	for d := range dirs {
		if err := w.Add(d); err != nil && !errors.Is(err, os.ErrNotExist) {
			logger.Warn("file watch: cannot watch a directory; changes there are not seen", "dir", d, "err", err)
		}
	}
	return names
}

// relevant reports whether ev may change a watched file: an event on one
// of their names, or on kubelet's ..data links and timestamped
// directories. Other files in those directories (a database beside the
// config, say) are ignored.
func relevant(ev fsnotify.Event, names map[string]bool) bool {
	base := filepath.Base(ev.Name)
	return names[base] || strings.HasPrefix(base, "..")
}
