package main_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/heraldhq/herald/domain"
	"github.com/heraldhq/herald/migrations/pgtest"
	herhttp "github.com/heraldhq/herald/transport/http"
)

// A tenant's export, imported into an empty database, is the same history:
// herald serve's projections build from it a read model equal, table by
// table and row by row, to the one of the database it came from. Only the
// log positions differ, since an import writes the events anew.
func TestAuditImportReproducesTheReadModel(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	src := newFaultEnv(t, 1, pgtest.NewDatabase(t))
	h := src.startServe("source")
	ops := newDeliveryAPI(t, src)
	as := func(user string, perms ...string) *deliveryAPI { return ops.as(src, user, perms...) }
	admin := as("ops-admin", herhttp.PermissionAdmin)

	// Every projection has something to build: directory members (one who
	// left), an org fan-out, users' messages, reads, archives, a read-all,
	// preferences, a template and its delivery.
	org := "/v1/directory/orgs/" + faultTenant + "/members"
	if _, err := admin.do(http.MethodPost, h.base+org, map[string]any{"userIds": []string{"user-01", "user-02", "user-03"}}, nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.do(http.MethodDelete, h.base+org+"/user-03", nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := as("user-05").do(http.MethodPut, h.base+"/v1/preferences", rawJSON(`{"categories":{"FAULT_TEST":{"email":false}}}`), nil, nil); err != nil {
		t.Fatal(err)
	}
	msgs := faultMessages("import", 15)
	orgMsg := newFaultMsg("import-org", 99, nil)
	orgMsg.body = []byte(strings.Replace(strings.Replace(string(orgMsg.body), `"recipientScope":"users"`, `"recipientScope":"org"`, 1), `"recipientIds":null`, `"recipientIds":[]`, 1))
	src.produce(append(msgs, orgMsg))
	src.waitCreated(int64(expect(t, msgs...).created + 2))
	waitProjected(t, src.db)

	for user, act := range map[string]func(d *deliveryAPI, ids []string) error{
		"user-00": func(d *deliveryAPI, ids []string) error {
			return d.post(h.base + "/v1/notifications/" + ids[0] + "/read")
		},
		"user-07": func(d *deliveryAPI, ids []string) error {
			return d.post(h.base + "/v1/notifications/" + ids[0] + "/archive")
		},
		"user-01": func(d *deliveryAPI, ids []string) error { return d.post(h.base + "/v1/notifications/read-all") },
		"user-02": func(d *deliveryAPI, ids []string) error {
			if err := d.post(h.base + "/v1/notifications/" + ids[0] + "/read"); err != nil {
				return err
			}
			return d.post(h.base + "/v1/notifications/" + ids[0] + "/unread")
		},
	} {
		d := as(user)
		var list []struct {
			ID string `json:"id"`
		}
		if _, err := d.do(http.MethodGet, h.base+"/v1/notifications", nil, nil, &list); err != nil || len(list) == 0 {
			t.Fatalf("%s's inbox: %d notifications, %v", user, len(list), err)
		}
		ids := make([]string, len(list))
		for i, n := range list {
			ids[i] = n.ID
		}
		if err := act(d, ids); err != nil {
			t.Fatalf("%s: %v", user, err)
		}
	}
	tpl := ops.createTemplate(h.base, emailTemplate("import"))
	delivery := ops.mustSend(h.base, "import-email", tpl, domain.ChannelEmail, "user-05@herald.example", map[string]any{"name": "Eve"})
	ops.waitSettled(src, h.base, delivery)
	waitProjected(t, src.db)

	file := filepath.Join(t.TempDir(), "export.jsonl")
	if out, code := runAudit(t, src.dbURL, "export", "--tenant", faultTenant, "--out", file); code != 0 {
		t.Fatalf("export: exit %d\n%s", code, out)
	}
	dstURL := pgtest.NewDatabase(t)
	// A tampered or truncated export writes nothing.
	exported, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	tampered, cut := filepath.Join(t.TempDir(), "tampered.jsonl"), filepath.Join(t.TempDir(), "cut.jsonl")
	if err := os.WriteFile(tampered, bytes.Replace(exported, []byte(`Message 7`), []byte(`Message 8`), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cut, exported[:bytes.LastIndexByte(exported[:len(exported)-1], '\n')+1], 0o600); err != nil {
		t.Fatal(err)
	}
	if out, code := runAudit(t, dstURL, "import", "--file", tampered); code != 1 || !strings.Contains(out, "nothing imported") || !strings.Contains(out, "BROKEN") {
		t.Fatalf("import of a tampered export: exit %d\n%s", code, out)
	}
	if out, code := runAudit(t, dstURL, "import", "--file", cut); code == 0 || !strings.Contains(out, "truncated") {
		t.Fatalf("import of a truncated export: exit %d\n%s", code, out)
	}
	if n := countEvents(t, dstURL); n != 0 {
		t.Fatalf("%d events written by imports that failed", n)
	}
	out, code := runAudit(t, dstURL, "import", "--file", file)
	if code != 0 || !regexp.MustCompile(`(?m)^imported \d+ events`).MatchString(out) || !strings.Contains(out, "every chain holds") {
		t.Fatalf("import into an empty database: exit %d\n%s", code, out)
	}
	if out, code := runAudit(t, dstURL, "import", "--file", file); code == 0 || !strings.Contains(out, "already holds events") {
		t.Fatalf("a second import was not refused: exit %d\n%s", code, out)
	}
	if out, code := runAudit(t, dstURL, "verify"); code != 0 || !strings.HasPrefix(out, "OK: ") {
		t.Fatalf("verify after the import: exit %d\n%s", code, out)
	}

	dst := newFaultEnv(t, 1, dstURL)
	dst.startServe("replay")
	waitProjected(t, dst.db)
	if srcEvents, dstEvents := countEvents(t, src.dbURL), countEvents(t, dstURL); dstEvents != srcEvents {
		t.Fatalf("%d events imported of the %d recorded: the export missed some of the tenant's", dstEvents, srcEvents)
	}

	tables := readModelTables(t, src.db)
	if len(tables) < 7 {
		t.Fatalf("read model tables %v: fewer than expected, the comparison would prove little", tables)
	}
	for _, table := range tables {
		want, got := tableRows(t, src.db, table), tableRows(t, dst.db, table)
		if len(want) == 0 && table != "dispatch_queue" {
			t.Errorf("%s is empty in the source: the test does not exercise it", table)
		}
		if !slices.Equal(want, got) {
			t.Errorf("%s differs after the import:\nsource:\n  %s\nimported:\n  %s", table, strings.Join(want, "\n  "), strings.Join(got, "\n  "))
		}
	}
}

// countEvents counts the events of the database at dbURL.
func countEvents(t *testing.T, dbURL string) int64 {
	t.Helper()
	db, err := pgx.Connect(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(context.Background())
	var n int64
	if err := db.QueryRow(context.Background(), `SELECT count(*) FROM events`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// post sends a bodiless POST and fails unless it succeeds.
func (a *deliveryAPI) post(url string) error {
	_, err := a.do(http.MethodPost, url, nil, nil, nil)
	return err
}

// waitProjected waits until every projection's checkpoint is the log's
// last position.
func waitProjected(t *testing.T, db *pgxpool.Pool) {
	t.Helper()
	waitUntil(t, "the projections to reach the log's head", func(ctx context.Context) (bool, string, error) {
		var head string
		var behind []string
		err := db.QueryRow(ctx, `
			SELECT h.head, coalesce(array_agg(c.name || ' at ' || c.position) FILTER (WHERE c.position <> h.head), '{}')
			FROM (SELECT tx::text || '-' || position AS head FROM events ORDER BY tx DESC, position DESC LIMIT 1) h
			CROSS JOIN projection_checkpoints c
			GROUP BY h.head`).Scan(&head, &behind)
		return err == nil && len(behind) == 0, fmt.Sprintf("head %s, behind: %v", head, behind), err
	})
}

// notReadModel are the tables that do not hold what projections build: the
// log itself, projection bookkeeping, and live push state. The inbox's delta
// log is push state too: it coalesces a recipient's unread_count deltas per
// projection batch, so a replay in fewer, larger batches writes fewer of
// them, and a client of the new database resyncs anyway (its seq belongs to
// the old one).
var notReadModel = []string{"events", "streams", "goose_db_version", "projection_checkpoints", "projection_parked",
	"ws_instances", "ws_sessions", "ws_pushes", "inbox_deltas", "inbox_delta_seqs"}

// readModelTables lists the read model's tables, so that a table a later
// projection adds is compared without this test changing.
func readModelTables(t *testing.T, db *pgxpool.Pool) []string {
	t.Helper()
	return queryStrings(t, db, `SELECT table_name::text FROM information_schema.tables
		WHERE table_schema = 'public' AND table_type = 'BASE TABLE' AND NOT (table_name::text = ANY($1)) AND table_name::text NOT LIKE '%\_rebuild'
		ORDER BY table_name`, notReadModel)
}

// tableRows returns table's rows as JSON text, sorted, without their log
// positions: an import writes the events anew.
func tableRows(t *testing.T, db *pgxpool.Pool, table string) []string {
	t.Helper()
	out := queryStrings(t, db, `SELECT (to_jsonb(r) - 'position')::text FROM `+table+` r`)
	slices.Sort(out)
	return out
}

// queryStrings returns the one text column of sql's rows.
func queryStrings(t *testing.T, db *pgxpool.Pool, sql string, args ...any) []string {
	t.Helper()
	rows, err := db.Query(context.Background(), sql, args...)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return out
}
