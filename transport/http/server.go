package http

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/heraldhq/herald/commands"
	"github.com/heraldhq/herald/commands/eventstore"
	"github.com/heraldhq/herald/domain"
	"github.com/heraldhq/herald/queries"
	"github.com/heraldhq/herald/transport/auth"
)

// HeaderConsistencyToken carries the position a write reached.
const HeaderConsistencyToken = "X-Consistency-Token"

// Check is a named readiness check.
type Check struct {
	Name string
	Func func(context.Context) error
}

// Commands is the write side the API drives (*commands.Commands).
type Commands interface {
	ChangeNotification(context.Context, commands.ChangeNotification) (commands.ChangeResult, error)
	MarkAllRead(context.Context, commands.MarkAllRead) (eventstore.Position, error)
	NotificationHistory(ctx context.Context, tenant, recipient, id string) ([]commands.HistoryEntry, error)
	ChangeMembers(context.Context, commands.ChangeMembers) (commands.ChangeMembersResult, error)
	CreateTemplate(context.Context, commands.CreateTemplate) (commands.TemplateResult, error)
	UpdateTemplate(context.Context, commands.UpdateTemplate) (commands.TemplateResult, error)
	TemplateHistory(ctx context.Context, tenant, id string) ([]commands.HistoryEntry, error)
	PreviewTemplate(ctx context.Context, tenant, id string, params map[string]any) (domain.Template, commands.Rendered, error)
	Send(context.Context, commands.Send) (commands.SendResult, error)
	Delivery(ctx context.Context, tenant, id, user string, seeAll bool) (string, []commands.HistoryEntry, error)
	RetryDelivery(ctx context.Context, tenant, id, actor, actorName, correlationID string) (eventstore.Position, error)
	NotificationDeliveries(ctx context.Context, tenant, recipient, id string) ([]commands.DeliveryHistory, error)
	// ParseAsOf and NotificationAt answer what a notification was at a
	// moment of the log.
	ParseAsOf(s string) (commands.AsOf, error)
	NotificationAt(ctx context.Context, tenant, recipient, id string, a commands.AsOf) (commands.NotificationAsOf, error)
	InboxAt(ctx context.Context, tenant, recipient string, ids []string, a commands.AsOf) ([]domain.InboxItem, int, error)
	Head(ctx context.Context) (eventstore.Position, error)
	RegisterDevice(context.Context, commands.RegisterDevice) (commands.DeviceResult, error)
	RemoveDevice(ctx context.Context, tenant, userID, id, actorName, correlationID string) (eventstore.Position, error)
	Devices(ctx context.Context, tenant, userID string) ([]domain.Device, error)
	ChangeDevice(context.Context, commands.ChangeDevice) (commands.DeviceResult, error)
	Preferences(ctx context.Context, tenant, userID string) (commands.PreferencesView, error)
	TenantPreferences(ctx context.Context, tenant string) (commands.PreferencesView, error)
	ChangePreferences(context.Context, commands.ChangePreferences) (commands.PreferencesView, error)
	// ComparePositions orders two consistency tokens, as the event store
	// does.
	ComparePositions(a, b string) (int, error)
}

// Inbox reads the inbox read model (*queries.Inbox).
type Inbox interface {
	List(context.Context, queries.ListInbox) (queries.Page, error)
	Get(ctx context.Context, tenant, recipientID, id string) (domain.InboxItem, error)
	UnreadCount(ctx context.Context, tenant, recipientID string) (int64, error)
	ReadAllCount(ctx context.Context, tenant, recipientID, position string) (n int64, found bool, err error)
	Checkpoint(context.Context) (string, error)
	NotificationIDs(ctx context.Context, tenant, recipientID string) ([]string, error)
}

// Directory reads the directory read model (*queries.Directory).
type Directory interface {
	ListMembers(ctx context.Context, tenant string, g domain.Group, cursor string, limit int) (queries.MembersPage, error)
	Checkpoint(context.Context) (string, error)
}

// Templates reads the templates read model (*queries.Templates).
type Templates interface {
	List(context.Context, queries.ListTemplates) (queries.TemplatesPage, error)
	Get(ctx context.Context, tenant, id string) (queries.TemplateView, error)
	Checkpoint(context.Context) (string, error)
}

// Deliveries reads the deliveries read model (*queries.Deliveries).
type Deliveries interface {
	List(context.Context, queries.ListDeliveries) (queries.DeliveriesPage, error)
	Checkpoint(context.Context) (string, error)
}

// Verifier turns a bearer token into its principal (*auth.Verifier).
type Verifier interface {
	Verify(ctx context.Context, token string) (auth.Principal, error)
}

// Deps are what the API serves from. Each is the few methods the API calls,
// so that a test assembles only what it exercises: the commands over the
// in-memory event store where no SQL is under test, no read model for a
// route that reads none. A route whose dependency is nil must not be called.
type Deps struct {
	Commands   Commands
	Inbox      Inbox
	Directory  Directory
	Templates  Templates
	Deliveries Deliveries
	Verifier   Verifier
	// Sockets serve the socket admin API.
	Sockets Sockets
	// Chains verify hash chains for auditors; nil when the event store
	// is not PostgreSQL's.
	Chains Chains
	// Checks decide GET /readyz.
	Checks []Check
	Logger *slog.Logger
}

// Server serves the REST API. It is safe for concurrent use.
type Server struct {
	commands   Commands
	inbox      Inbox
	directory  Directory
	templates  Templates
	deliveries Deliveries
	verifier   Verifier
	sockets    Sockets
	chains     Chains
	checks     []Check
	logger     *slog.Logger
	readWait   time.Duration
}

// NewServer returns the REST API over d.
func NewServer(d Deps) *Server {
	logger := d.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Server{
		commands: d.Commands, inbox: d.Inbox, directory: d.Directory, templates: d.Templates, deliveries: d.Deliveries, verifier: d.Verifier, sockets: d.Sockets,
		chains: d.Chains, checks: d.Checks, logger: logger, readWait: DefaultReadWait,
	}
}

// Register adds the API's routes to mux. Unknown routes get the error
// envelope from Middleware.
func (s *Server) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /healthz", s.healthz)
	// Seed 003's services are probed at /health; answering there too lets
	// their monitors and load balancers check Herald unchanged.
	mux.HandleFunc("GET /health", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.HandleFunc("GET /v1/openapi.json", s.openAPI)
	s.registerInbox(mux)
	s.registerDirectory(mux)
	s.registerTemplates(mux)
	s.registerDeliveries(mux)
	s.registerDevices(mux)
	s.registerPreferences(mux)
	s.registerSockets(mux)
	s.registerAudit(mux)
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	WriteData(w, r, http.StatusOK, map[string]string{"status": "ok"}, Meta{})
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	results := map[string]any{}
	ok := true
	for _, c := range s.checks {
		if err := c.Func(ctx); err != nil {
			ok = false
			results[c.Name] = "failing"
			s.logger.WarnContext(ctx, "readiness check failing", "check", c.Name, "error", err)
			continue
		}
		results[c.Name] = "ok"
	}
	if !ok {
		WriteError(w, r, s.logger, &domain.Error{Code: domain.CodeUnavailable, Message: "not ready", Details: map[string]any{"checks": results}})
		return
	}
	WriteData(w, r, http.StatusOK, map[string]any{"status": "ready", "checks": results}, Meta{})
}

type authedHandler func(w http.ResponseWriter, r *http.Request, p auth.Principal)

// authed verifies the caller's bearer token before h runs.
func (s *Server) authed(h authedHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		token, err := auth.BearerToken(r)
		if err == nil {
			var p auth.Principal
			if p, err = s.verifier.Verify(r.Context(), token); err == nil {
				h(w, r, p)
				return
			}
		}
		// An unauthenticated body is not read: net/http would otherwise
		// read what is left of it before answering, for as long as a slow
		// client takes to send it. Closing after the answer spares that.
		w.Header().Set("Connection", "close")
		WriteError(w, r, s.logger, err)
	}
}

// permitted authenticates the caller and requires permission, before the
// handler reads anything.
func (s *Server) permitted(permission string, h authedHandler) http.HandlerFunc {
	return s.authed(func(w http.ResponseWriter, r *http.Request, p auth.Principal) {
		if !p.Has(permission) {
			WriteError(w, r, s.logger, domain.Errorf(domain.CodeForbidden, "this operation needs the %s permission", permission).
				WithDetail("permission", permission))
			return
		}
		h(w, r, p)
	})
}
