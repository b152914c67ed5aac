package queries

import (
	"context"
	"encoding/base64"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/heraldhq/herald/domain"
)

// Directory reads the directory projection. It is safe for concurrent use.
type Directory struct {
	pool *pgxpool.Pool
}

// NewDirectory returns directory queries over pool.
func NewDirectory(pool *pgxpool.Pool) *Directory { return &Directory{pool: pool} }

// MembersPage is one page of a group's members.
type MembersPage struct {
	Members    []string
	NextCursor string
}

// ListMembers returns a page of g's members, ordered by user id, after the
// opaque cursor of the previous page.
func (d *Directory) ListMembers(ctx context.Context, tenant string, g domain.Group, cursor string, limit int) (MembersPage, error) {
	if limit <= 0 {
		limit = DefaultLimit
	}
	after, err := decodeMemberCursor(cursor)
	if err != nil {
		return MembersPage{}, err
	}
	rows, err := d.pool.Query(ctx, `
		SELECT user_id FROM directory_members
		WHERE tenant = $1 AND kind = $2 AND group_id = $3 AND user_id > $4
		ORDER BY user_id
		LIMIT $5`, tenant, string(g.Kind), g.ID, after, limit+1)
	if err != nil {
		return MembersPage{}, fmt.Errorf("list members: %w", err)
	}
	members, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return MembersPage{}, fmt.Errorf("list members: %w", err)
	}
	page := MembersPage{Members: members}
	if len(members) > limit {
		page.Members = members[:limit]
		page.NextCursor = base64.RawURLEncoding.EncodeToString([]byte(members[limit-1]))
	}
	return page, nil
}

// decodeMemberCursor reads the cursor of a member page: the last user id of
// the page before, which must be an id the directory can hold (a made-up
// cursor must not reach PostgreSQL as invalid text).
func decodeMemberCursor(cursor string) (string, error) {
	if cursor == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil || domain.IdentifierProblem(string(b)) != "" {
		return "", domain.Errorf(domain.CodeValidationFailed, "invalid cursor").WithDetail("fields", map[string]any{"cursor": "is not a cursor this API returned"})
	}
	return string(b), nil
}

// Checkpoint returns the position the directory projection has applied the
// log up to.
func (d *Directory) Checkpoint(ctx context.Context) (string, error) {
	return checkpoint(ctx, d.pool, "directory")
}
