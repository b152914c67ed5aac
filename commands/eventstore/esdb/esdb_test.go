package esdb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	esdbclient "github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"

	"github.com/heraldhq/herald/commands/eventstore"
	"github.com/heraldhq/herald/commands/eventstore/storetest"
)

// unreachableURL names a server that refuses connections at once; one
// discovery attempt keeps the failure fast.
const unreachableURL = "esdb://127.0.0.1:1?tls=false&maxDiscoverAttempts=1&discoveryInterval=10&gossipTimeout=1"

func TestPositionsRoundTrip(t *testing.T) {
	for _, p := range []esdbclient.Position{
		{Commit: 0, Prepare: 0},
		{Commit: 1, Prepare: 1},
		{Commit: 40960, Prepare: 40960},
		{Commit: 5000, Prepare: 4000},
		{Commit: math.MaxUint64, Prepare: math.MaxUint64},
	} {
		s := formatPosition(p)
		c, err := parsePosition(s)
		if err != nil || !c.set || c.pos != p {
			t.Errorf("%+v wrote %q, read back as %+v, %v", p, s, c, err)
		}
	}
	if s := formatPosition(esdbclient.Position{Commit: 12, Prepare: 7}); s != "12:7" {
		t.Errorf("position written as %q, want 12:7", s)
	}
	if c, err := parsePosition(eventstore.Start); err != nil || c.set {
		t.Errorf("Start read as %+v, %v; want the unset cursor", c, err)
	}
}

func TestMalformedPositions(t *testing.T) {
	s := New(nil, Options{})
	for _, bad := range []eventstore.Position{
		"garbage", "1", "1:", ":1", ":", "1:2:3", "-1:2", "1:-2", "+1:2", "01:2", "1:02",
		" 1:2", "1:2 ", "1:x", "1;2", "18446744073709551616:0", "0:18446744073709551616",
	} {
		if _, err := parsePosition(bad); err == nil {
			t.Errorf("%q was accepted", bad)
		}
		if _, err := s.ComparePositions(bad, "1:1"); err == nil {
			t.Errorf("ComparePositions accepted %q", bad)
		}
		if _, err := s.ComparePositions("1:1", bad); err == nil {
			t.Errorf("ComparePositions accepted %q as its second position", bad)
		}
	}
	// ReadAll and Subscribe refuse a malformed position before calling the
	// server, so a store without a client answers.
	if _, err := s.ReadAll(context.Background(), "garbage", 1); err == nil {
		t.Error("ReadAll accepted a malformed position")
	}
	if err := s.Subscribe(context.Background(), "garbage", nil); err == nil {
		t.Error("Subscribe accepted a malformed position")
	}
}

func TestComparePositions(t *testing.T) {
	s := New(nil, Options{})
	for _, c := range []struct {
		a, b eventstore.Position
		want int
	}{
		{eventstore.Start, eventstore.Start, 0},
		{eventstore.Start, "0:0", -1},
		{"0:0", eventstore.Start, 1},
		{"7:7", "7:7", 0},
		{"7:7", "8:0", -1},
		{"8:0", "7:9", 1},
		{"8:1", "8:3", -1},
		{"10:10", "9:9", 1}, // numbers, not strings
	} {
		got, err := s.ComparePositions(c.a, c.b)
		if err != nil || got != c.want {
			t.Errorf("ComparePositions(%q, %q) = %d, %v; want %d", c.a, c.b, got, err, c.want)
		}
	}
}

func TestExpectedRevision(t *testing.T) {
	for e, want := range map[eventstore.ExpectedVersion]esdbclient.ExpectedRevision{
		eventstore.Any:       esdbclient.Any{},
		eventstore.NoStream:  esdbclient.NoStream{},
		eventstore.Exact(0):  esdbclient.Revision(0),
		eventstore.Exact(41): esdbclient.Revision(41),
	} {
		got, err := expectedRevision(e)
		if err != nil || got != want {
			t.Errorf("%s mapped to %#v, %v; want %#v", e, got, err, want)
		}
	}
	for _, e := range []eventstore.ExpectedVersion{-3, math.MinInt64} {
		if got, err := expectedRevision(e); err == nil {
			t.Errorf("invalid expected version %d mapped to %#v", int64(e), got)
		}
	}
}

func TestEventData(t *testing.T) {
	in := []eventstore.EventData{
		{ID: "0F8FAD5B-D9CB-469F-A165-70867728950E", Type: "NotificationRequested", Data: []byte(`{"b":1, "a":2}`), Metadata: []byte(`{ "tenant": "t1" }`)},
		{ID: "7c9e6679-7425-40de-944b-e07fc1f90ae7", Type: "NotificationCreated", Data: []byte(`{}`)},
	}
	metas, _, err := eventstore.Chain(eventstore.Hash{}, "s-1", 0, in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := eventData(in, metas)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range out {
		if !strings.EqualFold(e.EventID.String(), in[i].ID) || e.EventType != in[i].Type || e.ContentType != esdbclient.ContentTypeJson ||
			string(e.Data) != string(in[i].Data) || string(e.Metadata) != string(metas[i]) {
			t.Errorf("event %d mapped to %+v from %+v", i, e, in[i])
		}
	}
	stored := []eventstore.RecordedEvent{{ID: "0f8fad5b-d9cb-469f-a165-70867728950e"}, {ID: "7c9e6679-7425-40de-944b-e07fc1f90ae7"}}
	if !sameIDs(stored, in) {
		t.Error("the stored events of a retry were not recognised")
	}
	if sameIDs(stored[:1], in) || sameIDs([]eventstore.RecordedEvent{stored[1], stored[0]}, in) {
		t.Error("other events were taken for a retry")
	}
	for _, id := range []string{"not-a-uuid", "", "00000000-0000-0000-0000-000000000000"} {
		if _, err := eventData([]eventstore.EventData{{ID: id, Type: "E"}}, [][]byte{[]byte(`{}`)}); err == nil {
			t.Errorf("event id %q was accepted", id)
		}
	}
}

func TestPortError(t *testing.T) {
	want := map[esdbclient.ErrorCode]error{
		esdbclient.ErrorCodeWrongExpectedVersion: eventstore.ErrWrongVersion,
		esdbclient.ErrorUnavailable:              eventstore.ErrUnavailable,
		esdbclient.ErrorCodeConnectionClosed:     eventstore.ErrUnavailable,
		esdbclient.ErrorCodeDeadlineExceeded:     eventstore.ErrUnavailable,
		esdbclient.ErrorAborted:                  eventstore.ErrUnavailable,
		esdbclient.ErrorCodeNotLeader:            eventstore.ErrUnavailable,
	}
	for code := esdbclient.ErrorCodeUnknown; code <= esdbclient.ErrorUnavailable; code++ {
		if got := portError(code); !errors.Is(got, want[code]) || (got == nil) != (want[code] == nil) {
			t.Errorf("code %d mapped to %v, want %v", code, got, want[code])
		}
	}
}

func TestClassify(t *testing.T) {
	if classify(nil) != nil {
		t.Error("nil classified as an error")
	}
	cancelled := classify(fail(cancelledContext(), "read s", errors.New("rpc error: code = Canceled")))
	if !errors.Is(cancelled, context.Canceled) || errors.Is(cancelled, eventstore.ErrUnavailable) {
		t.Errorf("a call cancelled by its caller classified as %v", cancelled)
	}
	late := classify(errors.Join(errors.New("read s"), context.DeadlineExceeded))
	if !errors.Is(late, eventstore.ErrUnavailable) || !errors.Is(late, context.DeadlineExceeded) {
		t.Errorf("a deadline classified as %v", late)
	}
	unknown, _ := esdbclient.FromError(errors.New("rpc error: code = InvalidArgument"))
	for _, err := range []error{unknown, errors.New("plain")} {
		if got := classify(err); errors.Is(got, eventstore.ErrUnavailable) || errors.Is(got, eventstore.ErrWrongVersion) || got.Error() != err.Error() {
			t.Errorf("%v classified as %v", err, got)
		}
	}

	// An error the client makes itself: calls on a closed client.
	cfg, err := esdbclient.ParseConnectionString(unreachableURL)
	if err != nil {
		t.Fatal(err)
	}
	client, err := esdbclient.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_ = client.Close()
	_, err = client.AppendToStream(context.Background(), "s", esdbclient.AppendToStreamOptions{}, esdbclient.EventData{EventType: "E"})
	if !hasCode(err, esdbclient.ErrorCodeConnectionClosed) {
		t.Fatalf("append on a closed client failed with %v, want the connection-closed code", err)
	}
	if got := classify(fmt.Errorf("append to s: %w", err)); !errors.Is(got, eventstore.ErrUnavailable) {
		t.Errorf("a closed connection classified as %v", got)
	}
}

func cancelledContext() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

func TestRecorded(t *testing.T) {
	created := time.Date(2026, 3, 1, 12, 30, 0, 123400, time.UTC)
	in := esdbclient.RecordedEvent{
		EventID:        uuid.MustParse("0f8fad5b-d9cb-469f-a165-70867728950e"),
		EventType:      "NotificationRequested",
		ContentType:    "application/json",
		StreamID:       "request-1",
		EventNumber:    3,
		Position:       esdbclient.Position{Commit: 9000, Prepare: 9000},
		CreatedDate:    created,
		Data:           []byte(`{"n": 1}`),
		SystemMetadata: map[string]string{"type": "NotificationRequested", "content-type": "application/json"},
		UserMetadata:   []byte(`{ "z": 1,  "a": 2 }`),
	}
	got, err := recorded(&in)
	if err != nil {
		t.Fatal(err)
	}
	want := eventstore.RecordedEvent{
		Position: "9000:9000", StreamID: "request-1", Version: 3, ID: "0f8fad5b-d9cb-469f-a165-70867728950e",
		Type: "NotificationRequested", Data: in.Data, Metadata: in.UserMetadata, RecordedAt: created,
	}
	if got.Position != want.Position || got.StreamID != want.StreamID || got.Version != want.Version || got.ID != want.ID ||
		got.Type != want.Type || string(got.Data) != string(want.Data) || string(got.Metadata) != string(want.Metadata) || !got.RecordedAt.Equal(want.RecordedAt) {
		t.Errorf("mapped to %+v, want %+v", got, want)
	}
	// Servers before 22.6 send no position with stream reads.
	in.Position = esdbclient.Position{Commit: math.MaxUint64, Prepare: math.MaxUint64}
	if _, err := recorded(&in); err == nil {
		t.Error("an event without a log position was accepted")
	}
}

func TestIsHerald(t *testing.T) {
	defaults := New(nil, Options{}).opts.StreamPrefixes
	for _, c := range []struct {
		stream, eventType string
		want              bool
	}{
		{"request-0f8fad5b", "NotificationRequested", true},
		{"notification-1", "NotificationCreated", true},
		{"inbox-t1-u1", "InboxRead", true},
		{"template-1", "TemplateSaved", true},
		{"preferences-t1-u1", "PreferencesChanged", true},
		{"directory-t1", "MemberAdded", true},
		{"requests-1", "E", false},
		{"other-1", "E", false},
		{"$$request-1", "$metadata", false},
		{"$ce-request", "$>", false},
		{"$stats-127.0.0.1:2113", "$statsCollected", false},
		{"request-1", "$metadata", false},
	} {
		if got := isHerald(defaults, c.stream, c.eventType); got != c.want {
			t.Errorf("isHerald(%q, %q) = %v, want %v", c.stream, c.eventType, got, c.want)
		}
	}
	custom := []string{"ns1-"}
	if !isHerald(custom, "ns1-a-1", "E") || isHerald(custom, "request-1", "E") {
		t.Error("custom prefixes are not the ones filtered on")
	}
}

func TestTakeSkipsRedeliveredAndForeignEvents(t *testing.T) {
	s := New(nil, Options{})
	ev := func(stream string, pos uint64) received {
		return received{event: &esdbclient.RecordedEvent{
			EventID: uuid.New(), EventType: "E", StreamID: stream, Position: esdbclient.Position{Commit: pos, Prepare: pos},
		}}
	}
	next := cursor{pos: esdbclient.Position{Commit: 20, Prepare: 20}, set: true}
	var batch []eventstore.RecordedEvent
	for _, r := range []received{
		ev("request-1", 10),      // before the cursor: delivered already
		ev("request-1", 20),      // at the cursor: the last one delivered
		ev("request-2", 30),      // new
		ev("other-1", 40),        // not Herald's
		ev("request-2", 30),      // again
		ev("notification-1", 50), // new
	} {
		if err := s.take(r, &next, &batch); err != nil {
			t.Fatal(err)
		}
	}
	if len(batch) != 2 || batch[0].Position != "30:30" || batch[1].Position != "50:50" || next.String() != "50:50" {
		t.Fatalf("took %+v, cursor at %s; want the events at 30 and 50", batch, next)
	}
	drop := errors.New("dropped")
	if err := s.take(received{err: drop}, &next, &batch); !errors.Is(err, drop) || len(batch) != 2 {
		t.Fatalf("a drop was taken as %v", err)
	}
}

func TestConnectionStrings(t *testing.T) {
	for in, want := range map[string]string{
		"kurrentdb://admin:changeit@localhost:2113?tls=false": "esdb://admin:changeit@localhost:2113?tls=false",
		"KurrentDB+discover://cluster.local:2113":             "esdb+discover://cluster.local:2113",
		"esdb://localhost:2113?tls=false":                     "esdb://localhost:2113?tls=false",
		"kurrentdbx://localhost":                              "kurrentdbx://localhost",
	} {
		if got := clientConnectionString(in); got != want {
			t.Errorf("%q rewritten as %q, want %q", in, got, want)
		}
	}
	s, err := Open("kurrentdb://localhost:2113?tls=false", Options{})
	if err != nil {
		t.Fatalf("a kurrentdb connection string was refused: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := Open("http://localhost:2113", Options{}); err == nil {
		t.Error("an http URL was accepted")
	}
	if _, err := Open("esdb://admin:s3cret@localhost:99x", Options{}); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("a bad connection string failed with %v: want an error without the password", err)
	}
}

// TestUnreachableStore checks, without a server, that calls fail fast with
// ErrUnavailable, that a client which gave up is replaced, and that a
// subscription keeps trying until its context ends.
func TestUnreachableStore(t *testing.T) {
	s, err := Open(unreachableURL, Options{})
	if err != nil {
		t.Fatal(err)
	}
	first := s.current()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	calls := map[string]func() error{
		"append (any)": func() error {
			_, err := s.Append(ctx, "request-1", eventstore.Any, eventstore.EventData{ID: uuid.NewString(), Type: "E", Data: []byte(`{}`)})
			return err
		},
		"append (no stream)": func() error {
			_, err := s.Append(ctx, "request-1", eventstore.NoStream, eventstore.EventData{ID: uuid.NewString(), Type: "E", Data: []byte(`{}`)})
			return err
		},
		"read stream":          func() error { _, err := s.ReadStream(ctx, "request-1", 0, 10); return err },
		"read stream backward": func() error { _, err := s.ReadStreamBackward(ctx, "request-1", eventstore.LastVersion, 10); return err },
		"read log":             func() error { _, err := s.ReadAll(ctx, eventstore.Start, 10); return err },
		"head":                 func() error { _, err := s.Head(ctx); return err },
	}
	for name, f := range calls {
		if err := f(); !errors.Is(err, eventstore.ErrUnavailable) {
			t.Errorf("%s on an unreachable server: %v, want ErrUnavailable", name, err)
		}
	}
	if elapsed := time.Since(start); elapsed > 15*time.Second {
		t.Errorf("an unreachable server took %s to fail", elapsed)
	}
	if s.current() == first {
		t.Error("the client that gave up reconnecting was not replaced")
	}

	sctx, scancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer scancel()
	err = s.Subscribe(sctx, eventstore.Start, func(context.Context, []eventstore.RecordedEvent) error { return nil })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a subscription to an unreachable server ended with %v, want context.DeadlineExceeded", err)
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	closed := s.current()
	if _, err := s.ReadStream(ctx, "request-1", 0, 1); !errors.Is(err, eventstore.ErrUnavailable) {
		t.Errorf("a read after Close: %v, want ErrUnavailable", err)
	}
	if s.current() != closed {
		t.Error("a closed store replaced its client")
	}
}

// TestConformance runs the port's suite against the server at
// HERALD_TEST_ESDB_URL, for example "esdb://localhost:2113?tls=false". The
// server must accept appends over 1 MiB (EVENTSTORE_MAX_APPEND_SIZE or
// KURRENTDB_MAX_APPEND_SIZE of 2097152, say).
func TestConformance(t *testing.T) {
	url := os.Getenv("HERALD_TEST_ESDB_URL")
	if url == "" {
		t.Skip("HERALD_TEST_ESDB_URL is not set: no EventStoreDB/KurrentDB server to run the conformance suite against (see `go tool task test:esdb`)")
	}
	storetest.Run(t, func(t *testing.T) eventstore.Store {
		ns := namespace(t)
		s, err := Open(url, Options{StreamPrefixes: []string{ns}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return namespaced{Store: s, ns: ns}
	}, storetest.Options{
		Unreachable: func(t *testing.T) eventstore.Store {
			s, err := Open(unreachableURL, Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Close() })
			return s
		},
	})
}

// namespace returns a stream-name prefix no other test uses.
func namespace(t *testing.T) string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "heraldtest" + hex.EncodeToString(b[:]) + "-"
}

// namespaced gives a test an empty log of its own on a shared server: its
// streams are ns+name on the server, and its Store's log holds only streams
// with prefix ns. Stream names go in with the prefix and come back without.
//
// It declares every method of eventstore.Store, even those that name no
// stream: a method left to the embedded *Store would reach the server
// without the prefix, and TestNamespacedDeclaresEveryMethod catches that.
type namespaced struct {
	*Store
	ns string
}

var _ eventstore.Store = namespaced{}

func (n namespaced) Append(ctx context.Context, stream string, expected eventstore.ExpectedVersion, events ...eventstore.EventData) (eventstore.AppendResult, error) {
	res, err := n.Store.Append(ctx, n.ns+stream, expected, events...)
	return res, n.unprefix(err)
}

func (n namespaced) AppendMulti(ctx context.Context, appends []eventstore.StreamAppend) ([]eventstore.AppendResult, error) {
	// A copy: the caller's appends keep their names.
	prefixed := make([]eventstore.StreamAppend, len(appends))
	for i, a := range appends {
		a.Stream = n.ns + a.Stream
		prefixed[i] = a
	}
	res, err := n.Store.AppendMulti(ctx, prefixed)
	return res, n.unprefix(err)
}

// unprefix gives the stream of a VersionError in err the name the test used.
func (n namespaced) unprefix(err error) error {
	var ve *eventstore.VersionError
	if errors.As(err, &ve) {
		ve.Stream = strings.TrimPrefix(ve.Stream, n.ns)
	}
	return err
}

func (n namespaced) ReadStream(ctx context.Context, stream string, from int64, limit int) ([]eventstore.RecordedEvent, error) {
	evs, err := n.Store.ReadStream(ctx, n.ns+stream, from, limit)
	return n.strip(evs), err
}

func (n namespaced) ReadStreamBackward(ctx context.Context, stream string, from int64, limit int) ([]eventstore.RecordedEvent, error) {
	evs, err := n.Store.ReadStreamBackward(ctx, n.ns+stream, from, limit)
	return n.strip(evs), err
}

func (n namespaced) ReadAll(ctx context.Context, after eventstore.Position, limit int) ([]eventstore.RecordedEvent, error) {
	evs, err := n.Store.ReadAll(ctx, after, limit)
	return n.strip(evs), err
}

// Head names no stream: the Store's StreamPrefixes already keep the log to
// the namespace.
func (n namespaced) Head(ctx context.Context) (eventstore.Position, error) {
	return n.Store.Head(ctx)
}

// ComparePositions names no stream: positions are the server's, whatever the
// namespace.
func (n namespaced) ComparePositions(a, b eventstore.Position) (int, error) {
	return n.Store.ComparePositions(a, b)
}

func (n namespaced) Subscribe(ctx context.Context, after eventstore.Position, handle func(context.Context, []eventstore.RecordedEvent) error) error {
	return n.Store.Subscribe(ctx, after, func(ctx context.Context, evs []eventstore.RecordedEvent) error {
		return handle(ctx, n.strip(evs))
	})
}

func (n namespaced) strip(evs []eventstore.RecordedEvent) []eventstore.RecordedEvent {
	for i := range evs {
		evs[i].StreamID = strings.TrimPrefix(evs[i].StreamID, n.ns)
	}
	return evs
}

// TestNamespacedDeclaresEveryMethod fails when namespaced leaves a method of
// the port to its embedded *Store. Such a method is promoted: it compiles,
// satisfies eventstore.Store and runs on the server's streams without the
// test's prefix, so the conformance suite would test something other than
// it says (AppendMulti did until it was declared). The port's methods come
// from reflection, so a method added to the port is checked too. Reflection
// does not say whether a method is promoted (the compiler generates one for
// each), so the declarations are read from the package's source, which go
// test runs beside.
func TestNamespacedDeclaresEveryMethod(t *testing.T) {
	wrapper := reflect.TypeOf(namespaced{}).Name()
	declared := declaredMethods(t, wrapper)
	port := reflect.TypeOf((*eventstore.Store)(nil)).Elem()
	for i := range port.NumMethod() {
		if name := port.Method(i).Name; !declared[name] {
			t.Errorf("%s does not declare %s: the embedded *Store's method is promoted and bypasses the test's namespace", wrapper, name)
		}
	}
}

// declaredMethods returns the names of the methods declared on type typ (or
// *typ) in the Go files of the current directory.
func declaredMethods(t *testing.T, typ string) map[string]bool {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil || len(files) == 0 {
		t.Fatalf("no Go files beside the test (%v)", err)
	}
	declared := map[string]bool{}
	fset := token.NewFileSet()
	for _, name := range files {
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Recv == nil || len(fn.Recv.List) != 1 {
				continue
			}
			recv := fn.Recv.List[0].Type
			if star, ok := recv.(*ast.StarExpr); ok {
				recv = star.X
			}
			if id, ok := recv.(*ast.Ident); ok && id.Name == typ {
				declared[fn.Name.Name] = true
			}
		}
	}
	return declared
}
