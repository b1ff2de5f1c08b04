package wsroom_test

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The README's Go code is compiled: each ```go block follows a line
//
//	<!-- snippet: path/to/file.go -->          the whole file
//	<!-- snippet: path/to/file.go#name -->     the lines between "// README:name" and "// README:end"
//
// and TestREADMESnippets checks that the block is that text (dedented), so
// a snippet that stops compiling fails the build of the file it lives in
// (a test, an example, or a package of the integration module), and one
// that drifts from its file fails this test. A ```go block without a
// snippet line fails too.
func TestREADMESnippets(t *testing.T) {
	blocks := readmeBlocks(t, "README.md")
	if len(blocks) == 0 {
		t.Fatal("README.md has no Go blocks")
	}
	for _, b := range blocks {
		if b.source == "" {
			t.Errorf("README.md:%d: a ```go block without a <!-- snippet: … --> line", b.line)
			continue
		}
		want, err := snippet(b.source)
		if err != nil {
			t.Errorf("README.md:%d: %v", b.line, err)
			continue
		}
		if got := strings.TrimSpace(b.text); got != strings.TrimSpace(want) {
			t.Errorf("README.md:%d: the block differs from %s:\n--- README\n%s\n--- %s\n%s", b.line, b.source, got, b.source, want)
		}
	}
}

type readmeBlock struct {
	line   int
	source string // path or path#name; "" if none
	text   string
}

var snippetLine = regexp.MustCompile(`^<!-- snippet: (\S+) -->$`)

func readmeBlocks(t *testing.T, path string) []readmeBlock {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var blocks []readmeBlock
	var source string
	var cur *readmeBlock
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case cur != nil && line == "```":
			blocks = append(blocks, *cur)
			cur = nil
		case cur != nil:
			cur.text += line + "\n"
		case line == "```go":
			cur = &readmeBlock{line: n, source: source}
			source = ""
		default:
			if m := snippetLine.FindStringSubmatch(line); m != nil {
				source = m[1]
			} else if strings.TrimSpace(line) != "" {
				source = ""
			}
		}
	}
	return blocks
}

// snippet returns the text a snippet reference names.
func snippet(ref string) (string, error) {
	path, name, _ := strings.Cut(ref, "#")
	b, err := os.ReadFile(filepath.FromSlash(path))
	if err != nil {
		return "", err
	}
	if name == "" {
		return string(b), nil
	}
	start, end := "// README:"+name, "// README:end"
	var lines []string
	in := false
	for _, line := range strings.Split(string(b), "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case trimmed == start:
			in = true
		case in && trimmed == end:
			return dedent(lines), nil
		case in:
			lines = append(lines, line)
		}
	}
	return "", fmt.Errorf("%s has no lines between %q and %q", path, start, end)
}

// dedent removes the indentation all lines share.
func dedent(lines []string) string {
	common := -1
	for _, l := range lines {
		if strings.TrimSpace(l) == "" {
			continue
		}
		n := len(l) - len(strings.TrimLeft(l, "\t"))
		if common < 0 || n < common {
			common = n
		}
	}
	for i, l := range lines {
		if len(l) >= common && common > 0 {
			lines[i] = l[common:]
		}
	}
	return strings.Join(lines, "\n")
}

// TestREADMELayout checks that the README's Layout table names every
// source file of the package (tests aside) and every directory under
// internal/, so that a newcomer finds each one where the table says.
func TestREADMELayout(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, layout, ok := strings.Cut(string(b), "\n## Layout\n")
	if !ok {
		t.Fatal("README.md has no ## Layout section")
	}
	layout, _, _ = strings.Cut(layout, "\n## ")
	named := func(path string) bool { return strings.Contains(layout, "`"+path+"`") }
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	dirs, err := filepath.Glob("internal/*")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if !strings.HasSuffix(f, "_test.go") && !named(f) {
			t.Errorf("README.md's Layout does not name %s", f)
		}
	}
	for _, d := range dirs {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() && !named(d) {
			t.Errorf("README.md's Layout does not name %s", d)
		}
	}
}
