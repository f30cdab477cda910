// Package logsafe bounds text that came from outside (a request path, a
// service hook's fields, an event's type) before it reaches a log line, an
// error or an answer, so that a caller cannot bloat any of them.
package logsafe

import (
	"fmt"
	"strings"
)

// MaxLen bounds the text Clip keeps: room for a GUID, an event type or an
// organization URL, never a megabyte.
const MaxLen = 100

// Clip returns s, or its first MaxLen bytes cut on a rune boundary and
// followed by its full length.
func Clip(s string) string {
	if len(s) <= MaxLen {
		return s
	}
	return fmt.Sprintf("%s…(%d bytes)", strings.ToValidUTF8(s[:MaxLen], ""), len(s))
}
