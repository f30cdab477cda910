package debiantest

import "testing"

func TestMirrorIn(t *testing.T) {
	for _, c := range []struct {
		name, text string
		deb822     bool
		want       string
	}{
		{"deb822", "Types: deb\n# a snapshot\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n" +
			"Types: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\n", true, "http://mirror.example/debian"},
		{"deb822 other suite first", "Types: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\n\n" +
			"Types: deb-src deb\nURIs: http://mirror.example/debian\nSuites: bookworm\n", true, "http://mirror.example/debian"},
		{"deb822 disabled", "Enabled: no\nTypes: deb\nURIs: http://off.example/debian\nSuites: bookworm\n", true, ""},
		{"deb822 sources only", "Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\n", true, ""},
		{"one-line", "# comment\ndeb-src http://src.example/debian bookworm main\ndeb http://mirror.example/debian bookworm main contrib\n", false, "http://mirror.example/debian"},
		{"one-line options", "deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian bookworm main\n", false, "http://mirror.example/debian"},
		{"one-line other suite", "deb http://mirror.example/debian trixie main\n", false, ""},
	} {
		if got := mirrorIn(c.text, c.deb822); got != c.want {
			t.Errorf("%s: mirrorIn = %q, want %q", c.name, got, c.want)
		}
	}
}

func TestMirrorFromEnv(t *testing.T) {
	t.Setenv(EnvMirror, "http://override.example/debian")
	if m, err := Mirror(); err != nil || m != "http://override.example/debian" {
		t.Errorf("Mirror() = %q, %v; want the mirror %s names", m, err, EnvMirror)
	}
}
