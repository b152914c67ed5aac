package queries

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/heraldhq/herald/domain"
)

// Page sizes of the inbox list.
const (
	DefaultLimit = 20
	MaxLimit     = 100
)

// Inbox reads a recipient's inbox. It is safe for concurrent use.
type Inbox struct {
	pool *pgxpool.Pool
}

// NewInbox returns the inbox queries over pool.
func NewInbox(pool *pgxpool.Pool) *Inbox { return &Inbox{pool: pool} }

// ListInbox selects a page of one recipient's inbox, newest first.
type ListInbox struct {
	Tenant      string
	RecipientID string
	// Limit is the page size, 1 to MaxLimit; 0 means DefaultLimit.
	Limit int
	// Cursor is the NextCursor of the previous page, or empty for the first.
	Cursor     string
	UnreadOnly bool
	// Archived lists the archive instead of the inbox: archived
	// notifications are listed only there.
	Archived bool
	// Type keeps only notifications of this type, when not empty.
	Type string
	// Since keeps only notifications created at or after it, when not zero.
	Since time.Time
}

// Page is one page of an inbox.
type Page struct {
	Items []domain.InboxItem
	// NextCursor fetches the following page; empty on the last page.
	NextCursor string
}

// cursor is the keyset of the last item of a page. It is opaque to clients.
type cursor struct {
	CreatedAt time.Time `json:"t"`
	ID        string    `json:"i"`
}

func (c cursor) encode() string {
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s string) (cursor, error) {
	var c cursor
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		err = json.Unmarshal(b, &c)
	}
	if err != nil || c.CreatedAt.IsZero() || !domain.ValidID(c.ID) {
		return c, domain.Errorf(domain.CodeValidationFailed, "invalid cursor").WithDetail("fields", map[string]any{"cursor": "is not a cursor this API returned"})
	}
	return c, nil
}

// List returns a page of the inbox.
func (q *Inbox) List(ctx context.Context, l ListInbox) (Page, error) {
	if l.Limit == 0 {
		l.Limit = DefaultLimit
	}
	if l.Limit < 1 || l.Limit > MaxLimit {
		return Page{}, domain.Errorf(domain.CodeValidationFailed, "limit must be between 1 and %d", MaxLimit).
			WithDetail("fields", map[string]any{"limit": fmt.Sprintf("between 1 and %d", MaxLimit)})
	}
	// The first page starts after (infinity, max uuid): the same query as
	// the other pages, so one index range scan serves them all.
	afterTime := pgtype.Timestamptz{InfinityModifier: pgtype.Infinity, Valid: true}
	afterID := "ffffffff-ffff-ffff-ffff-ffffffffffff"
	if l.Cursor != "" {
		c, err := decodeCursor(l.Cursor)
		if err != nil {
			return Page{}, err
		}
		afterTime, afterID = pgtype.Timestamptz{Time: c.CreatedAt, Valid: true}, c.ID
	}
	since := pgtype.Timestamptz{InfinityModifier: pgtype.NegativeInfinity, Valid: true}
	if !l.Since.IsZero() {
		since = pgtype.Timestamptz{Time: l.Since, Valid: true}
	}
	rows, err := q.pool.Query(ctx, listSQL(l.UnreadOnly, l.Archived), l.Tenant, l.RecipientID, afterTime, afterID, l.Limit+1, l.Type, since)
	if err != nil {
		return Page{}, fmt.Errorf("list inbox: %w", err)
	}
	items, err := pgx.CollectRows(rows, scanItem)
	if err != nil {
		return Page{}, fmt.Errorf("list inbox: %w", err)
	}
	page := Page{Items: items}
	if len(items) > l.Limit {
		page.Items = items[:l.Limit]
		last := page.Items[l.Limit-1]
		page.NextCursor = cursor{CreatedAt: last.CreatedAt, ID: last.ID}.encode()
	}
	return page, nil
}

// One statement per view rather than one with boolean parameters, so that
// each view's WHERE implies the predicate of its partial index
// (migrations/00004): NOT archived for the inbox, NOT is_read for unread,
// archived for the archive.
const (
	itemColumns = `id::text, type, tenant, recipient_id, content, action_url, data, is_read, read_at, archived, archived_at, created_at`
	listSelect  = `
		SELECT ` + itemColumns + `
		FROM inbox_notifications
		WHERE tenant = $1 AND recipient_id = $2 AND (created_at, id) < ($3, $4::uuid)
			AND ($6 = '' OR type = $6) AND created_at >= $7`
	// Qualified, because a bare id would name the id::text output column
	// and sort by text, which the index does not give.
	listOrder = ` ORDER BY inbox_notifications.created_at DESC, inbox_notifications.id DESC LIMIT $5`
)

var listViews = map[[2]bool]string{
	{false, false}: listSelect + ` AND NOT archived` + listOrder,
	{true, false}:  listSelect + ` AND NOT is_read AND NOT archived` + listOrder,
	{false, true}:  listSelect + ` AND archived` + listOrder,
	{true, true}:   listSelect + ` AND archived AND NOT is_read` + listOrder,
}

func listSQL(unread, archived bool) string { return listViews[[2]bool{unread, archived}] }

// Get returns one notification of the recipient's, archived or not. Another
// recipient's, or an unknown one, is notification.not_found.
func (q *Inbox) Get(ctx context.Context, tenant, recipientID, id string) (domain.InboxItem, error) {
	missing := domain.Errorf(domain.CodeNotificationMissing, "notification not found")
	if !domain.ValidID(id) {
		return domain.InboxItem{}, missing
	}
	rows, err := q.pool.Query(ctx, `SELECT `+itemColumns+` FROM inbox_notifications WHERE id = $1 AND tenant = $2 AND recipient_id = $3`, id, tenant, recipientID)
	if err != nil {
		return domain.InboxItem{}, fmt.Errorf("get notification: %w", err)
	}
	item, err := pgx.CollectExactlyOneRow(rows, scanItem)
	if errors.Is(err, pgx.ErrNoRows) {
		return domain.InboxItem{}, missing
	}
	if err != nil {
		return domain.InboxItem{}, fmt.Errorf("get notification: %w", err)
	}
	return item, nil
}

func scanItem(row pgx.CollectableRow) (domain.InboxItem, error) {
	var it domain.InboxItem
	var tenant string
	// Data is scanned as bytes: pgx hands a *json.RawMessage to
	// json.Unmarshal, which validates and copies every document again.
	err := row.Scan(&it.ID, &it.Type, &tenant, &it.RecipientID, &it.Content, &it.ActionURL, (*[]byte)(&it.Data), &it.IsRead, &it.ReadAt, &it.IsArchived, &it.ArchivedAt, &it.CreatedAt)
	it.OrganizerID = &tenant
	it.CreatedAt = it.CreatedAt.UTC()
	if it.ReadAt != nil {
		t := it.ReadAt.UTC()
		it.ReadAt = &t
	}
	if it.ArchivedAt != nil {
		t := it.ArchivedAt.UTC()
		it.ArchivedAt = &t
	}
	if len(it.Data) == 0 || string(it.Data) == "null" {
		it.Data = json.RawMessage(`{}`)
	}
	return it, err
}

// UnreadCount returns how many of the recipient's notifications are unread.
func (q *Inbox) UnreadCount(ctx context.Context, tenant, recipientID string) (int64, error) {
	var n int64
	err := q.pool.QueryRow(ctx, `SELECT unread FROM inbox_unread_counts WHERE tenant = $1 AND recipient_id = $2`, tenant, recipientID).Scan(&n)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("unread count: %w", err)
	}
	return n, nil
}

// ReadAllCount returns how many notifications the read-all of the recipient
// at position marked read; found is false until the inbox projection has
// applied that read-all.
func (q *Inbox) ReadAllCount(ctx context.Context, tenant, recipientID, position string) (n int64, found bool, err error) {
	err = q.pool.QueryRow(ctx, `SELECT marked FROM inbox_read_alls WHERE position = $1 AND tenant = $2 AND recipient_id = $3`,
		position, tenant, recipientID).Scan(&n)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("read-all count: %w", err)
	}
	return n, true, nil
}

// Checkpoint returns the position the inbox projection has applied the log
// up to: what a read of the inbox reflects.
func (q *Inbox) Checkpoint(ctx context.Context) (string, error) {
	return checkpoint(ctx, q.pool, "inbox")
}

func checkpoint(ctx context.Context, pool *pgxpool.Pool, projection string) (string, error) {
	var p string
	err := pool.QueryRow(ctx, `SELECT position FROM projection_checkpoints WHERE name = $1`, projection).Scan(&p)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil // not started: the start of the log
	}
	if err != nil {
		return "", fmt.Errorf("read %s checkpoint: %w", projection, err)
	}
	return p, nil
}

// NotificationIDs returns the ids of every notification of the recipient
// the read model holds, archived ones included, newest first: the
// candidates an as-of read of the inbox folds from the event store.
func (q *Inbox) NotificationIDs(ctx context.Context, tenant, recipientID string) ([]string, error) {
	rows, err := q.pool.Query(ctx, `SELECT id::text FROM inbox_notifications WHERE tenant = $1 AND recipient_id = $2 ORDER BY created_at DESC, id DESC`, tenant, recipientID)
	if err != nil {
		return nil, fmt.Errorf("notification ids: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("notification ids: %w", err)
	}
	return ids, nil
}
