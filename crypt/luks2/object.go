package luks2

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
)

// member is one name/value pair of a JSON object.
type member struct {
	key string
	val json.RawMessage
}

// object is a JSON object that keeps its members' order and raw values, so
// metadata this package does not understand (unknown tokens, unknown
// fields) survives a rewrite unchanged.
type object struct {
	m []member
}

// parseObject decodes raw as a JSON object. Duplicate names are rejected.
func parseObject(raw []byte) (*object, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("expected a JSON object")
	}
	o := &object{}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		k, ok := tok.(string)
		if !ok {
			return nil, fmt.Errorf("expected an object key")
		}
		if seen[k] {
			return nil, fmt.Errorf("duplicate key %q", k)
		}
		seen[k] = true
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		o.m = append(o.m, member{key: k, val: v})
	}
	if _, err := dec.Token(); err != nil { // closing '}'
		return nil, err
	}
	if _, err := dec.Token(); err == nil {
		return nil, fmt.Errorf("trailing data after JSON object")
	}
	return o, nil
}

func (o *object) get(k string) (json.RawMessage, bool) {
	for _, m := range o.m {
		if m.key == k {
			return m.val, true
		}
	}
	return nil, false
}

// set replaces the value of k in place, or appends k.
func (o *object) set(k string, v json.RawMessage) {
	for i := range o.m {
		if o.m[i].key == k {
			o.m[i].val = v
			return
		}
	}
	o.m = append(o.m, member{key: k, val: v})
}

func (o *object) del(k string) {
	for i := range o.m {
		if o.m[i].key == k {
			o.m = append(o.m[:i], o.m[i+1:]...)
			return
		}
	}
}

// clone returns a copy that can be modified without touching o.
func (o *object) clone() *object {
	c := &object{m: make([]member, len(o.m))}
	copy(c.m, o.m)
	return c
}

// MarshalJSON writes the object compactly in member order, as cryptsetup
// (json-c) does.
func (o *object) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, m := range o.m {
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := json.Marshal(m.key)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		if err := json.Compact(&b, m.val); err != nil {
			return nil, err
		}
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// mustRaw marshals v, which must be a plain data type that cannot fail.
func mustRaw(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("luks2: marshal %T: %v", v, err)) // programming error: only fixed struct types reach here
	}
	return b
}

// unmarshalExact decodes raw into v like json.Unmarshal, but object member
// names must match struct tags exactly (encoding/json matches them case-
// insensitively, json-c in cryptsetup does not) and duplicate names are
// rejected at every struct level. Unknown members are ignored.
func unmarshalExact(raw []byte, v any) error {
	return unmarshalValue(raw, reflect.ValueOf(v).Elem())
}

func unmarshalValue(raw []byte, rv reflect.Value) error {
	switch rv.Kind() {
	case reflect.Pointer:
		if bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
			rv.SetZero()
			return nil
		}
		if rv.IsNil() {
			rv.Set(reflect.New(rv.Type().Elem()))
		}
		return unmarshalValue(raw, rv.Elem())
	case reflect.Struct:
	default:
		return json.Unmarshal(raw, rv.Addr().Interface())
	}
	o, err := parseObject(raw)
	if err != nil {
		return err
	}
	t := rv.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		m, ok := o.get(name)
		if !ok {
			continue
		}
		if err := unmarshalValue(m, rv.Field(i)); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}
