package store

import (
	"encoding/binary"
	"fmt"
)

// appendKey appends the bbolt key of (provider, username) to dst: the
// length of provider as a uvarint, provider, then username. The length
// prefix makes the key unambiguous for any bytes in either part ("a","bc"
// and "ab","c" differ), and all of one provider's keys share a prefix.
func appendKey(dst []byte, provider, username string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(provider)))
	dst = append(dst, provider...)
	return append(dst, username...)
}

// appendID appends id big-endian, so that keys of the ids bucket sort by id.
func appendID(dst []byte, id uint64) []byte {
	return binary.BigEndian.AppendUint64(dst, id)
}

// errorf wraps err with the operation and the user it was about.
func errorf(op, provider, username string, err error) error {
	return fmt.Errorf("%s user %q of provider %q: %w", op, username, provider, err)
}
