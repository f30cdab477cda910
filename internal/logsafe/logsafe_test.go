package logsafe

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestClip(t *testing.T) {
	if got := Clip("2b9e7c51-8d3f-4a6e-b1c0-7f5d4e3a2c19"); got != "2b9e7c51-8d3f-4a6e-b1c0-7f5d4e3a2c19" {
		t.Errorf("a GUID was changed: %q", got)
	}
	if s := strings.Repeat("a", MaxLen); Clip(s) != s {
		t.Errorf("text of exactly MaxLen bytes was changed")
	}
	// Cut inside a multi-byte rune: the result stays valid UTF-8.
	got := Clip(strings.Repeat("é", 1000))
	if !utf8.ValidString(got) || len(got) > MaxLen+32 || !strings.HasSuffix(got, "…(2000 bytes)") {
		t.Errorf("Clip of 2000 bytes = %q", got)
	}
}
