package projections

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/heraldhq/herald/commands/eventstore"
	"github.com/heraldhq/herald/domain"
)

// Directory projects MemberJoined and MemberLeft into directory_members,
// the table org and merchant scopes are resolved from.
type Directory struct {
	name, table string
}

// NewDirectory returns the directory projection.
func NewDirectory() *Directory { return &Directory{name: "directory", table: "directory_members"} }

// Name implements Projection.
func (d *Directory) Name() string { return d.name }

// Rebuild implements Rebuildable.
func (d *Directory) Rebuild() (Projection, []TablePair) {
	rebuild := d.table + "_rebuild"
	return &Directory{name: d.name + rebuildSuffix, table: rebuild}, []TablePair{{Live: d.table, Rebuild: rebuild}}
}

type memberKey struct {
	tenant, kind, group, user string
}

// Apply implements Projection. Each event fully decides its member's state,
// so the batch is first reduced to the last event per member; then one
// statement inserts the joined and one deletes the departed, whatever the
// batch size.
func (d *Directory) Apply(ctx context.Context, tx pgx.Tx, events []eventstore.RecordedEvent) (func(), error) {
	type state struct {
		joined   bool
		position string
	}
	last := map[memberKey]state{}
	var order []memberKey
	for _, e := range events {
		if e.Type != domain.EventMemberJoined && e.Type != domain.EventMemberLeft {
			continue
		}
		v, err := domain.DecodeStored(e.Type, e.Metadata, e.Data)
		if err != nil {
			return nil, fmt.Errorf("event %s at %s: %w", e.ID, e.Position, err)
		}
		var k memberKey
		joined := false
		switch ev := v.(type) {
		case domain.MemberJoined:
			k, joined = memberKey{ev.Tenant, string(ev.Kind), ev.GroupID, ev.UserID}, true
		case domain.MemberLeft:
			k = memberKey{ev.Tenant, string(ev.Kind), ev.GroupID, ev.UserID}
		}
		if _, seen := last[k]; !seen {
			order = append(order, k)
		}
		last[k] = state{joined: joined, position: string(e.Position)}
	}
	if len(order) == 0 {
		return nil, nil
	}
	var join, leave struct{ tenant, kind, group, user, position []string }
	for _, k := range order {
		s := last[k]
		dst := &leave
		if s.joined {
			dst = &join
		}
		dst.tenant = append(dst.tenant, k.tenant)
		dst.kind = append(dst.kind, k.kind)
		dst.group = append(dst.group, k.group)
		dst.user = append(dst.user, k.user)
		dst.position = append(dst.position, s.position)
	}
	if len(join.user) > 0 {
		// A member who joins again keeps the position of the first join:
		// the write side never records a join of a current member.
		_, err := tx.Exec(ctx, `
			INSERT INTO `+d.table+` (tenant, kind, group_id, user_id, position)
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
			ON CONFLICT DO NOTHING`,
			join.tenant, join.kind, join.group, join.user, join.position)
		if err != nil {
			return nil, fmt.Errorf("insert members: %w", err)
		}
	}
	if len(leave.user) > 0 {
		_, err := tx.Exec(ctx, `
			DELETE FROM `+d.table+` m
			USING unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS l(tenant, kind, group_id, user_id)
			WHERE m.tenant = l.tenant AND m.kind = l.kind AND m.group_id = l.group_id AND m.user_id = l.user_id`,
			leave.tenant, leave.kind, leave.group, leave.user)
		if err != nil {
			return nil, fmt.Errorf("delete members: %w", err)
		}
	}
	return nil, nil
}
