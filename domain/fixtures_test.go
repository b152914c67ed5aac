package domain

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"testing/fstest"
)

// Golden fixtures pin the stored form of every event type at every schema
// version it was ever written with. testdata/events/<Type>.v<N>.json holds one
// realistic payload of <Type> as version N writes it, every field set,
// optional ones included. Stored events are never rewritten, so neither are
// these files, and there is deliberately no flag to regenerate them: when a
// fixture fails, the code no longer reads what is stored (a renamed field or
// JSON tag, a changed field type), and the fix belongs in the code.
//
// To add a stored type: give its payload EventType and EventID, register it
// in Events at version 1, and write <Type>.v1.json by hand with realistic
// values. TestEveryStoredTypeIsRegistered fails until the file exists and
// prints the payload's shape to start from.
//
// To change a payload's form: leave <Type>.v<N>.json as it is; register
// version N+1 and an upcast from N; write <Type>.v<N+1>.json, the new form;
// and write <Type>.v<N>.upcast.json, what the old fixture now reads as (the
// current payload, in encoding/json's form). Older versions' .upcast.json
// files follow each later version, since they show what an old payload reads
// as today; the payload fixtures themselves never change.
const fixtureDir = "testdata/events"

var fixtureName = regexp.MustCompile(`^([A-Z][A-Za-z0-9]*)\.v([1-9][0-9]*)(\.upcast)?\.json$`)

// fixtureFile is one parsed fixture file name.
type fixtureFile struct {
	eventType string
	version   int
	upcast    bool // what the payload fixture of that version reads as today
}

func parseFixtureName(name string) (fixtureFile, bool) {
	m := fixtureName.FindStringSubmatch(name)
	if m == nil {
		return fixtureFile{}, false
	}
	v, err := strconv.Atoi(m[2])
	if err != nil {
		return fixtureFile{}, false
	}
	return fixtureFile{eventType: m[1], version: v, upcast: m[3] != ""}, true
}

func fixturePath(eventType string, version int, upcast bool) string {
	if upcast {
		return fmt.Sprintf("%s.v%d.upcast.json", eventType, version)
	}
	return fmt.Sprintf("%s.v%d.json", eventType, version)
}

func listFixtures(t *testing.T, fsys fs.FS) []string {
	t.Helper()
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Name()
	}
	return names
}

// coverageProblems checks both sides: every version of every type r knows
// has its fixtures, and every file names a type and version r knows.
func coverageProblems(r *Registry, names []string) []string {
	var problems []string
	have := map[string]bool{}
	versions := r.Versions()
	for _, name := range names {
		have[name] = true
		f, ok := parseFixtureName(name)
		if !ok {
			problems = append(problems, fmt.Sprintf("%s: not a fixture; name fixtures <Type>.v<N>.json or <Type>.v<N>.upcast.json", name))
			continue
		}
		current, registered := versions[f.eventType]
		switch {
		case !registered:
			problems = append(problems, fmt.Sprintf("%s: %s is not a registered event type", name, f.eventType))
		case f.version > current:
			problems = append(problems, fmt.Sprintf("%s: %s is registered at version %d", name, f.eventType, current))
		case f.upcast && f.version == current:
			problems = append(problems, fmt.Sprintf("%s: version %d is current, nothing upcasts it", name, current))
		}
	}
	for _, typ := range slices.Sorted(maps.Keys(versions)) {
		current := versions[typ]
		for v := 1; v <= current; v++ {
			if !have[fixturePath(typ, v, false)] {
				problems = append(problems, missingFixture(r, typ, v, current))
			}
			if v < current && !have[fixturePath(typ, v, true)] {
				problems = append(problems, fmt.Sprintf("%s: missing; write what %s reads as at version %d",
					fixturePath(typ, v, true), fixturePath(typ, v, false), current))
			}
		}
	}
	return problems
}

func missingFixture(r *Registry, eventType string, version, current int) string {
	msg := fmt.Sprintf("%s: missing; write one realistic payload of %s as version %d stores it", fixturePath(eventType, version, false), eventType, version)
	if version != current {
		return msg
	}
	zero, err := r.Decode(eventType, current, []byte(`{}`))
	if err != nil {
		return msg
	}
	shape, err := json.MarshalIndent(zero, "", "  ")
	if err != nil {
		return msg
	}
	return msg + ", every field set; its shape:\n" + string(shape)
}

// roundTripProblem decodes the payload fixture name through r, upcasting it
// when it is of an older version, encodes the result, and compares that with
// what the fixture must read as: itself at the current version, its
// .upcast.json otherwise. It returns "" when they match.
func roundTripProblem(r *Registry, fsys fs.FS, name string) string {
	f, ok := parseFixtureName(name)
	if !ok || f.upcast {
		return ""
	}
	data, err := fs.ReadFile(fsys, name)
	if err != nil {
		return fmt.Sprintf("%s: %v", name, err)
	}
	v, err := r.Decode(f.eventType, f.version, data)
	if err != nil {
		return fmt.Sprintf("%s: %v", name, err)
	}
	if v.EventType() != f.eventType {
		return fmt.Sprintf("%s: decodes to a payload of %s", name, v.EventType())
	}
	got, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("%s: encode: %v", name, err)
	}
	wantName := name
	if f.version != r.Versions()[f.eventType] {
		wantName = fixturePath(f.eventType, f.version, true)
		if data, err = fs.ReadFile(fsys, wantName); err != nil {
			return fmt.Sprintf("%s: %v", name, err)
		}
	}
	if same, err := sameJSON(data, got); err != nil {
		return fmt.Sprintf("%s: %v", wantName, err)
	} else if !same {
		var want bytes.Buffer
		_ = json.Compact(&want, data)
		return fmt.Sprintf("%s: the payload no longer reads and writes as stored\n want %s\n  got %s", name, want.Bytes(), got)
	}
	return ""
}

// sameJSON reports whether a and b hold the same JSON value, whatever their
// spacing and key order (jsonb keeps neither). Numbers compare as written,
// so 12.5 and 12.50 differ, as they would in a payload hash.
func sameJSON(a, b []byte) (bool, error) {
	va, err := decodeExactly(a)
	if err != nil {
		return false, err
	}
	vb, err := decodeExactly(b)
	if err != nil {
		return false, err
	}
	return reflect.DeepEqual(va, vb), nil
}

func decodeExactly(b []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := d.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("more than one JSON value")
	}
	return v, nil
}

func TestEveryStoredTypeIsRegistered(t *testing.T) {
	// The stored names themselves, so that a type dropped from Events along
	// with its fixtures is noticed too.
	for _, typ := range []string{
		EventNotificationRequested, EventNotificationCreated,
		EventNotificationRead, EventNotificationUnread,
		EventNotificationArchived, EventNotificationUnarchived,
		EventInboxMarkedRead, EventMemberJoined, EventMemberLeft,
	} {
		if _, ok := Events.Versions()[typ]; !ok {
			t.Errorf("%s is not registered in Events", typ)
		}
	}
	for _, p := range coverageProblems(Events, listFixtures(t, os.DirFS(fixtureDir))) {
		t.Error(p)
	}
}

func TestStoredPayloadsMatchTheirFixtures(t *testing.T) {
	fsys := os.DirFS(fixtureDir)
	for _, name := range listFixtures(t, fsys) {
		if p := roundTripProblem(Events, fsys, name); p != "" {
			t.Error(p)
		}
	}
}

// probe is a payload of a test registry at version 2; version 1 named its
// field "title".
type probe struct {
	Name string `json:"name"`
	Note string `json:"note,omitempty"`
}

func (probe) EventType() string { return "Probe" }

func (probe) EventID(stream string, version int64) string {
	return versionedEventID(stream, "Probe", version)
}

// probeRenamed is probe with a JSON tag renamed, the mistake fixtures are
// there to catch.
type probeRenamed struct {
	Name string `json:"label"`
	Note string `json:"note,omitempty"`
}

func (probeRenamed) EventType() string { return "Probe" }

func (probeRenamed) EventID(stream string, version int64) string {
	return versionedEventID(stream, "Probe", version)
}

func renameTitle(data []byte) ([]byte, error) {
	var v map[string]any
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, err
	}
	v["name"] = v["title"]
	delete(v, "title")
	return json.Marshal(v)
}

// The checks above pass on the real fixtures; this shows they would fail on
// each mistake they exist for, including the upcast path no real type has
// yet.
func TestFixtureChecksCatchMistakes(t *testing.T) {
	good := fstest.MapFS{
		"Probe.v1.json":        {Data: []byte(`{"title": "first"}`)},
		"Probe.v1.upcast.json": {Data: []byte(`{"name": "first"}`)},
		"Probe.v2.json":        {Data: []byte(`{"name": "second", "note": "n"}`)},
	}
	registry := func(register func(*Registry), up func([]byte) ([]byte, error)) *Registry {
		r := NewRegistry()
		register(r)
		r.RegisterUpcast("Probe", 1, up)
		return r
	}
	r := registry(func(r *Registry) { Register[probe](r, 2) }, renameTitle)
	if p := coverageProblems(r, listFixtures(t, good)); len(p) != 0 {
		t.Fatalf("complete fixtures reported: %q", p)
	}
	for name := range good {
		if p := roundTripProblem(r, good, name); p != "" {
			t.Fatalf("matching fixture reported: %s", p)
		}
	}

	renamed := registry(func(r *Registry) { Register[probeRenamed](r, 2) }, renameTitle)
	if roundTripProblem(renamed, good, "Probe.v2.json") == "" {
		t.Error("a renamed JSON tag passed")
	}
	noop := registry(func(r *Registry) { Register[probe](r, 2) }, func(b []byte) ([]byte, error) { return b, nil })
	if roundTripProblem(noop, good, "Probe.v1.json") == "" {
		t.Error("an upcast that loses a field passed")
	}

	for name, files := range map[string][]string{
		"missing current version": {"Probe.v1.json", "Probe.v1.upcast.json"},
		"missing old version":     {"Probe.v1.upcast.json", "Probe.v2.json"},
		"missing upcast result":   {"Probe.v1.json", "Probe.v2.json"},
		"unregistered type":       {"Probe.v1.json", "Probe.v1.upcast.json", "Probe.v2.json", "Nope.v1.json"},
		"future version":          {"Probe.v1.json", "Probe.v1.upcast.json", "Probe.v2.json", "Probe.v3.json"},
		"upcast of current":       {"Probe.v1.json", "Probe.v1.upcast.json", "Probe.v2.json", "Probe.v2.upcast.json"},
		"not a fixture":           {"Probe.v1.json", "Probe.v1.upcast.json", "Probe.v2.json", "notes.txt"},
	} {
		if len(coverageProblems(r, files)) == 0 {
			t.Errorf("%s: not reported", name)
		}
	}
}
