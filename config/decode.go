package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"gopkg.in/yaml.v3"
)

// fileSystem is everything loading does on disk. Tests swap in a fake one.
type fileSystem interface {
	Stat(name string) (fs.FileInfo, error)
	// Open opens name for reading. It must not block on a FIFO.
	Open(name string) (fs.File, error)
}

type osFS struct{}

func (osFS) Stat(name string) (fs.FileInfo, error) { return os.Stat(name) }

func (osFS) Open(name string) (fs.File, error) {
	return os.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
}

type parseOptions struct {
	file    string // for error messages; empty for Parse
	baseDir string // absolute; relative state_dir and secret_file resolve here
	fs      fileSystem
}

// maxNodes limits how many YAML nodes the schema walk visits. Aliases can
// make a small file stand for a huge tree ("billion laughs").
const maxNodes = 100_000

// parse does Load's and Parse's work. In order:
//  1. parse the YAML into a node tree (syntax errors, empty file, extra
//     documents);
//  2. walk the tree against the Go types: unknown and duplicate keys, wrong
//     kinds, bad scalars. The walk also records each key path's line and
//     which keys are present;
//  3. decode into Config with yaml.v3 and KnownFields(true);
//  4. apply defaults and check every field and cross-field rule.
//
// Step 4 is skipped when steps 1-3 found a problem that leaves the decoded
// values unreliable, such as a duplicate key: yaml.v3 then drops whole
// mappings and list entries.
func parse(data []byte, opt parseOptions) (cfg *Config, err error) {
	v := &validator{
		lines:   make(map[string]int),
		present: make(map[string]bool),
		bad:     make(map[string]bool),
		budget:  maxNodes,
		opt:     opt,
	}
	cfg = v.decode(data)
	if cfg != nil && !v.fatal {
		v.check(cfg)
	}
	if len(v.problems) > 0 {
		sort.SliceStable(v.problems, func(i, j int) bool { return v.problems[i].Line < v.problems[j].Line })
		return nil, &ValidationError{File: opt.file, Problems: v.problems}
	}
	return cfg, nil
}

// decode runs steps 1-3 of parse. It returns nil when there is nothing to
// check further.
func (v *validator) decode(data []byte) *Config {
	v.data = data
	if len(data) > MaxFileSize {
		v.fatalf("", "file is larger than %d bytes; this is not a hastord configuration file", MaxFileSize)
		return nil
	}
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := safeYAML(func() error { return dec.Decode(&root) }); err != nil {
		if errors.Is(err, io.EOF) {
			v.fatalf("", "file is empty; it needs at least state_dir and targets (see examples/quickstart.yaml)")
		} else {
			v.yamlError(err)
		}
		return nil
	}
	var extra yaml.Node
	if err := safeYAML(func() error { return dec.Decode(&extra) }); !errors.Is(err, io.EOF) {
		if err != nil {
			v.yamlError(err)
		} else {
			v.problems = append(v.problems, Problem{Line: extra.Line,
				Message: "a second YAML document starts here; the file must hold exactly one"})
			v.fatal = true
		}
		return nil
	}

	v.walk(&root, reflect.TypeFor[Config](), "")
	if v.fatal {
		return nil
	}

	cfg := new(Config)
	strict := yaml.NewDecoder(bytes.NewReader(data))
	strict.KnownFields(true)
	err := safeYAML(func() error { return strict.Decode(cfg) })
	var te *yaml.TypeError
	switch {
	case err == nil:
	case errors.As(err, &te):
		// The walk reports these same problems with key paths. If it found
		// none, the walk and yaml.v3 disagree: report yaml.v3's words.
		if len(v.problems) == 0 {
			for _, msg := range te.Errors {
				v.yamlError(errors.New(msg))
			}
		}
	default:
		if len(v.problems) == 0 {
			v.yamlError(err)
		}
		v.fatal = true
		return nil
	}
	return cfg
}

// safeYAML runs a yaml.v3 call. It turns a panic inside the parser into an
// error, because hastord must never crash on its input.
func safeYAML(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("YAML parser failed on this input: %v", r)
		}
	}()
	return f()
}

// yamlError records an error from yaml.v3 as a fatal problem. It takes the
// line from the "yaml: line N: " prefix of the message, for display only.
func (v *validator) yamlError(err error) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if num, text, ok := strings.Cut(rest, ": "); ok {
			if n, err := strconv.Atoi(num); err == nil {
				line, msg = n, text
			}
		}
	}
	if line > 0 && tabIndented(v.data, line) {
		msg += "; YAML must indent with spaces, not tabs"
	}
	v.problems = append(v.problems, Problem{Message: msg, Line: line})
	v.fatal = true
}

// tabIndented reports whether the 1-based line of data has a tab in its
// leading white space.
func tabIndented(data []byte, line int) bool {
	for i := 1; i < line; i++ {
		nl := bytes.IndexByte(data, '\n')
		if nl < 0 {
			return false
		}
		data = data[nl+1:]
	}
	for _, c := range data {
		switch c {
		case '\t':
			return true
		case ' ':
		default:
			return false
		}
	}
	return false
}

var (
	byteSizeType = reflect.TypeFor[ByteSize]()
	durationType = reflect.TypeFor[Duration]()
	logLevelType = reflect.TypeFor[LogLevel]()
)

// walk checks node n against Go type t at key path. It records the line of
// every path, marks non-null paths present and reports, with key paths:
//   - unknown keys (not fatal: yaml.v3 with KnownFields reports and skips
//     them);
//   - bad scalar values (not fatal: the path goes in v.bad, and later checks
//     that involve it are skipped);
//   - duplicate keys, wrong kinds, empty list entries and bad merges
//     (fatal: yaml.v3 drops the whole enclosing mapping or list entry, so
//     the decoded values no longer line up with the paths).
func (v *validator) walk(n *yaml.Node, t reflect.Type, path string) {
	if v.budget--; v.budget < 0 {
		if v.budget == -1 {
			v.fatalf(path, "the document is too large or uses too many aliases")
		}
		return
	}
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return
		}
		n = n.Content[0]
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return
		}
		n = n.Alias
	}
	if path != "" {
		if _, seen := v.lines[path]; !seen {
			v.lines[path] = n.Line
		}
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return
	}
	v.present[path] = true
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}

	switch t {
	case byteSizeType, durationType, logLevelType:
		if !v.wantKind(n, yaml.ScalarNode, path) {
			return
		}
		p := reflect.New(t).Interface().(interface{ UnmarshalText([]byte) error })
		if err := p.UnmarshalText([]byte(n.Value)); err != nil {
			v.badf(path, n.Line, "%s", problemText(err))
		}
		return
	}

	switch t.Kind() {
	case reflect.Struct:
		if v.wantKind(n, yaml.MappingNode, path) {
			v.mapping(n, t, path)
		}
	case reflect.Slice:
		if !v.wantKind(n, yaml.SequenceNode, path) {
			return
		}
		for i, e := range n.Content {
			ep := path + "[" + strconv.Itoa(i) + "]"
			if e.Kind == yaml.ScalarNode && e.ShortTag() == "!!null" {
				v.lines[ep] = e.Line
				v.problems = append(v.problems, Problem{Field: ep, Line: e.Line, Message: "empty list entry; remove it or fill it in"})
				v.fatal = true
				continue
			}
			v.walk(e, t.Elem(), ep)
		}
	case reflect.Map:
		// Maps are keyed by node names: any key, each once.
		if !v.wantKind(n, yaml.MappingNode, path) {
			return
		}
		seen := make(map[string]int)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode || k.ShortTag() == "!!merge" || k.Value == "" {
				v.fatalAt(path, k.Line, "keys here must be plain names")
				continue
			}
			kp := joinPath(path, k.Value)
			if first, dup := seen[k.Value]; dup {
				v.fatalAt(kp, k.Line, fmt.Sprintf("key given twice (first on line %d)", first))
				continue
			}
			seen[k.Value] = k.Line
			v.walk(val, t.Elem(), kp)
		}
	case reflect.String, reflect.Int, reflect.Bool:
		if !v.wantKind(n, yaml.ScalarNode, path) {
			return
		}
		// yaml.v3 truncates a float such as 1.5 into an int field without
		// complaint, so insist on an integer.
		if err := n.Decode(reflect.New(t).Interface()); err != nil || t.Kind() == reflect.Int && n.ShortTag() != "!!int" {
			want := map[reflect.Kind]string{reflect.String: "a string", reflect.Int: "a whole number", reflect.Bool: "true or false"}[t.Kind()]
			v.badf(path, n.Line, "want %s, got %q", want, n.Value)
		}
	default:
		// Every field type of Config is handled above; a new one needs a case.
		v.fatalf(path, "internal error: no schema check for Go type %s", t)
	}
}

// wantKind reports whether n has kind k, and reports a fatal problem if not.
func (v *validator) wantKind(n *yaml.Node, k yaml.Kind, path string) bool {
	if n.Kind == k {
		return true
	}
	name := map[yaml.Kind]string{
		yaml.ScalarNode:   "a single value",
		yaml.MappingNode:  "a mapping of keys to values",
		yaml.SequenceNode: "a list",
	}
	got := name[n.Kind]
	if n.Kind == yaml.ScalarNode {
		got = strconv.Quote(n.Value)
	}
	v.problems = append(v.problems, Problem{Field: path, Line: n.Line, Message: "want " + name[k] + ", got " + got})
	v.fatal = true
	v.bad[path] = true
	return false
}

// mapping checks the keys of mapping node n against struct type t.
func (v *validator) mapping(n *yaml.Node, t reflect.Type, path string) {
	fields := yamlFields(t)
	seen := make(map[string]int) // key → line
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			v.fatalAt(path, k.Line, "keys must be plain names")
			continue
		}
		if k.ShortTag() == "!!merge" {
			merges = append(merges, val)
			continue
		}
		if k.Value == "" {
			v.problems = append(v.problems, Problem{Field: path, Line: k.Line, Message: `empty key ""`})
			continue
		}
		kp := joinPath(path, k.Value)
		if first, dup := seen[k.Value]; dup {
			v.fatalAt(kp, k.Line, fmt.Sprintf("key given twice (first on line %d)", first))
			continue
		}
		seen[k.Value] = k.Line
		ft, ok := fields[k.Value]
		if !ok {
			v.lines[kp] = k.Line
			v.problems = append(v.problems, Problem{Field: kp, Line: k.Line, Message: unknownKey(k.Value, t)})
			continue
		}
		v.walk(val, ft, kp)
	}
	// Merged keys (<<: *anchor) fill in what the mapping does not set
	// itself. Earlier merges win over later ones, as in yaml.v3.
	for _, m := range merges {
		v.merge(m, t, path, fields, seen, true)
	}
}

func (v *validator) merge(m *yaml.Node, t reflect.Type, path string, fields map[string]reflect.Type, seen map[string]int, top bool) {
	if m.Kind == yaml.AliasNode && m.Alias != nil {
		m = m.Alias
	}
	switch {
	case m.Kind == yaml.MappingNode:
		for i := 0; i+1 < len(m.Content); i += 2 {
			k, val := m.Content[i], m.Content[i+1]
			if k.Kind != yaml.ScalarNode || k.ShortTag() == "!!merge" {
				v.fatalAt(path, k.Line, "nested or non-scalar keys in a merged mapping are not supported")
				return
			}
			if _, done := seen[k.Value]; done {
				continue
			}
			seen[k.Value] = k.Line
			kp := joinPath(path, k.Value)
			ft, ok := fields[k.Value]
			if !ok {
				v.lines[kp] = k.Line
				v.problems = append(v.problems, Problem{Field: kp, Line: k.Line, Message: unknownKey(k.Value, t) + " (merged with <<)"})
				continue
			}
			v.walk(val, ft, kp)
		}
	case m.Kind == yaml.SequenceNode && top:
		for _, e := range m.Content {
			v.merge(e, t, path, fields, seen, false)
		}
	default:
		v.fatalAt(path, m.Line, "the value of << must be a mapping or a list of mappings")
	}
}

// yamlFields maps the yaml keys of struct type t to their field types.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	m := make(map[string]reflect.Type, t.NumField())
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if f.IsExported() && name != "" && name != "-" {
			m[name] = f.Type
		}
	}
	return m
}

// unknownKey words the problem for an unknown key, suggesting the nearest
// valid key or listing all of them.
func unknownKey(key string, t reflect.Type) string {
	var names []string
	for name := range yamlFields(t) {
		names = append(names, name)
	}
	sort.Strings(names)
	best, bestDist := "", 3
	for _, name := range names {
		if squash(name) == squash(key) {
			best, bestDist = name, 0
			break
		}
		if d := editDistance(key, name); d < bestDist {
			best, bestDist = name, d
		}
	}
	if best != "" {
		return fmt.Sprintf("unknown key; did you mean %q?", best)
	}
	return "unknown key; valid keys here: " + strings.Join(names, ", ")
}

func squash(s string) string {
	return strings.NewReplacer("_", "", "-", "").Replace(strings.ToLower(s))
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func joinPath(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}
