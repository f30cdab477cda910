package metrics

import (
	"strings"
	"sync"
)

// maxLabelValues bounds the distinct values one capped label may take. The
// real sets (webhook event types, provider error reasons, REST endpoints) are
// a handful each; anything past the cap is folded into [otherValue].
const maxLabelValues = 32

// maxLabelLen bounds one value's length in bytes; real values are short
// identifiers, and a long one would only bloat every scrape.
const maxLabelLen = 64

const (
	otherValue   = "other"   // a value past the cap
	unknownValue = "unknown" // an empty value
)

// labelCap remembers the values a label has taken and folds new ones into
// "other" once it is full.
type labelCap struct {
	mu   sync.Mutex
	seen map[string]struct{}
}

func newLabelCap() *labelCap { return &labelCap{seen: make(map[string]struct{})} }

// value returns v fit for a label: valid UTF-8 (client_golang panics on
// anything else), at most maxLabelLen bytes, "unknown" when empty, "other"
// when the cap is reached.
func (c *labelCap) value(v string) string {
	v = strings.ToValidUTF8(v, "\uFFFD")
	if len(v) > maxLabelLen {
		// Cut on a rune boundary so the result stays valid UTF-8.
		v = strings.ToValidUTF8(v[:maxLabelLen], "")
	}
	if v == "" {
		return unknownValue
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.seen[v]; ok {
		return v
	}
	if len(c.seen) >= maxLabelValues {
		return otherValue
	}
	c.seen[v] = struct{}{}
	return v
}
