package http_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/heraldhq/herald/commands/eventstore"
	"github.com/heraldhq/herald/domain"
	herhttp "github.com/heraldhq/herald/transport/http"
)

func (e *env) auditToken(sub, tenant string) string {
	e.t.Helper()
	tok, err := e.issuer.Issue(sub, tenant, []string{herhttp.PermissionAuditRead}, time.Hour)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// An auditor verifies one of the tenant's streams: it holds as written,
// and after one payload byte is changed the answer says where it breaks;
// another tenant's stream is not found, and the permission is required.
func TestAuditVerifyStream(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	for i := range 3 {
		ev := eventstore.EventData{ID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i), Type: "E",
			Data: []byte(fmt.Sprintf(`{"n":%d}`, i)), Metadata: []byte(`{"tenant":"org-1"}`)}
		if _, err := e.chains.Append(ctx, "notification-audit", eventstore.Any, ev); err != nil {
			t.Fatal(err)
		}
	}
	auditor := e.auditToken("auditor", "org-1")
	var got map[string]any
	e.do(http.MethodGet, "/v1/audit/verify?stream=notification-audit", auditor, nil).data(t, http.StatusOK, &got)
	if got["holds"] != true || got["events"] != 3.0 || got["break"] != nil {
		t.Fatalf("verification %v, want the chain of 3 events to hold", got)
	}

	if _, err := e.pool.Exec(ctx, `UPDATE events SET data = '{"n":7}' WHERE stream_id = 'notification-audit' AND version = 1`); err != nil {
		t.Fatal(err)
	}
	e.do(http.MethodGet, "/v1/audit/verify?stream=notification-audit", auditor, nil).data(t, http.StatusOK, &got)
	brk, _ := got["break"].(map[string]any)
	if got["holds"] != false || brk["version"] != 1.0 || brk["expected"] == nil || brk["found"] == nil || brk["position"] == nil {
		t.Fatalf("verification after tampering %v, want a break at version 1", got)
	}

	e.do(http.MethodGet, "/v1/audit/verify?stream=notification-audit", e.auditToken("auditor", "org-2"), nil).error(t, http.StatusNotFound, domain.CodeNotFound)
	e.do(http.MethodGet, "/v1/audit/verify", auditor, nil).error(t, http.StatusBadRequest, domain.CodeValidationFailed)
	e.do(http.MethodGet, "/v1/audit/verify?stream=notification-audit", e.token("alice", "org-1"), nil).error(t, http.StatusForbidden, domain.CodeForbidden)
}
