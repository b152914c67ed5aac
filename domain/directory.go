package domain

import (
	"fmt"
	"slices"
)

// Stored type names of the directory's events.
const (
	EventMemberJoined = "MemberJoined"
	EventMemberLeft   = "MemberLeft"
)

// GroupKind is the kind of a directory group a scope can address.
type GroupKind string

// The group kinds. An org group is the organizer itself (its id is the
// tenant); merchant groups are the merchants of the organizer. The two are
// separate lists: being a member of a merchant does not make one a member of
// the org, and the reverse.
const (
	GroupOrg      GroupKind = "org"
	GroupMerchant GroupKind = "merchant"
)

// MaxImportMembers bounds one bulk import, so one call stays one bounded
// append.
const MaxImportMembers = 10_000

// Group is one membership list of a tenant's directory.
type Group struct {
	Kind GroupKind `json:"kind"`
	ID   string    `json:"id"`
}

func (g Group) String() string { return string(g.Kind) + "/" + g.ID }

// ScopeGroup returns the directory group an org or merchant scope of req
// addresses; ok is false for the users scope.
func ScopeGroup(req Request) (g Group, ok bool) {
	switch req.Scope {
	case ScopeOrg:
		return Group{Kind: GroupOrg, ID: req.Tenant}, true
	case ScopeMerchant:
		return Group{Kind: GroupMerchant, ID: req.MerchantID}, true
	default:
		return Group{}, false
	}
}

// DirectoryStream is the stream of one tenant's memberships.
func DirectoryStream(tenant string) string { return "directory-" + tenant }

// MemberJoined records that a user joined a group of a tenant's directory.
type MemberJoined struct {
	Tenant  string    `json:"tenant"`
	Kind    GroupKind `json:"kind"`
	GroupID string    `json:"groupId"`
	UserID  string    `json:"userId"`
}

// MemberLeft records that a user left a group.
type MemberLeft struct {
	Tenant  string    `json:"tenant"`
	Kind    GroupKind `json:"kind"`
	GroupID string    `json:"groupId"`
	UserID  string    `json:"userId"`
}

// EventType implements Event.
func (MemberJoined) EventType() string { return EventMemberJoined }

// EventID implements Event. Besides its version, the id names the member:
// one append may join many users, and another instance deciding other joins
// at the same versions must conflict instead of passing for a retry.
func (e MemberJoined) EventID(stream string, version int64) string {
	return eventID(stream, versionedDiscriminator(EventMemberJoined, version)+"\x00"+membership(e.Kind, e.GroupID, e.UserID))
}

// EventType implements Event.
func (MemberLeft) EventType() string { return EventMemberLeft }

// EventID implements Event; see MemberJoined.EventID.
func (e MemberLeft) EventID(stream string, version int64) string {
	return eventID(stream, versionedDiscriminator(EventMemberLeft, version)+"\x00"+membership(e.Kind, e.GroupID, e.UserID))
}

// membership names one user in one group. The NUL separator keeps the parts
// apart: no id can hold NUL, which PostgreSQL text cannot store.
func membership(kind GroupKind, groupID, userID string) string {
	return string(kind) + "\x00" + groupID + "\x00" + userID
}

// Directory is the write-side state of one tenant's directory, folded from
// its stream: who is in which group. It is not safe for concurrent use.
type Directory struct {
	Tenant  string
	Version int64 // version of the last applied event; -1 when none
	members map[Group]map[string]struct{}
}

// NewDirectory returns the empty directory of tenant.
func NewDirectory(tenant string) *Directory {
	return &Directory{Tenant: tenant, Version: -1, members: map[Group]map[string]struct{}{}}
}

// Apply folds one event of the directory stream.
func (d *Directory) Apply(event Event, version int64) {
	switch e := event.(type) {
	case MemberJoined:
		g := Group{e.Kind, e.GroupID}
		if d.members[g] == nil {
			d.members[g] = map[string]struct{}{}
		}
		d.members[g][e.UserID] = struct{}{}
	case MemberLeft:
		g := Group{e.Kind, e.GroupID}
		delete(d.members[g], e.UserID)
		if len(d.members[g]) == 0 {
			delete(d.members, g)
		}
	}
	d.Version = version
}

// Members returns the members of g, sorted by user id, as a new slice the
// caller owns. Sorting makes the recorded recipient list of a scope the same
// whichever instance folded the directory.
func (d *Directory) Members(g Group) []string {
	m := d.members[g]
	out := make([]string, 0, len(m))
	for u := range m {
		out = append(out, u)
	}
	slices.Sort(out)
	return out
}

// IsMember reports whether user is in g.
func (d *Directory) IsMember(g Group, user string) bool {
	_, ok := d.members[g][user]
	return ok
}

// Join decides the joins of users to g: one MemberJoined per user who is not
// a member yet, in the order given, each user once. Joining a member again
// changes nothing, so a retried call appends nothing.
func (d *Directory) Join(g Group, users []string) ([]Event, error) {
	if err := d.validate(g, users); err != nil {
		return nil, err
	}
	seen := make(map[string]struct{}, len(users))
	var out []Event
	for _, u := range users {
		if _, dup := seen[u]; dup || d.IsMember(g, u) {
			continue
		}
		seen[u] = struct{}{}
		out = append(out, MemberJoined{Tenant: d.Tenant, Kind: g.Kind, GroupID: g.ID, UserID: u})
	}
	return out, nil
}

// Leave decides that user leaves g: a MemberLeft, or a nil Event when user
// is not a member.
func (d *Directory) Leave(g Group, user string) (Event, error) {
	if err := d.validate(g, []string{user}); err != nil {
		return nil, err
	}
	if !d.IsMember(g, user) {
		return nil, nil
	}
	return MemberLeft{Tenant: d.Tenant, Kind: g.Kind, GroupID: g.ID, UserID: user}, nil
}

func (d *Directory) validate(g Group, users []string) error {
	var v ValidationError
	switch g.Kind {
	case GroupOrg:
		if g.ID != d.Tenant {
			// The org group is the tenant itself; another id is another
			// tenant's, which this caller must not learn exists.
			return Errorf(CodeNotFound, "organizer %q not found", g.ID)
		}
	case GroupMerchant:
		if problem := IdentifierProblem(g.ID); problem != "" {
			v.Add("merchantId", problem)
		}
	default:
		v.Add("group", "must be org or merchant")
	}
	switch {
	case len(users) == 0:
		v.Add("userIds", "is required and must not be empty")
	case len(users) > MaxImportMembers:
		v.Add("userIds", fmt.Sprintf("must list at most %d users", MaxImportMembers))
	}
	for i, u := range users {
		if problem := IdentifierProblem(u); problem != "" {
			v.Add(fmt.Sprintf("userIds[%d]", i), problem)
			break
		}
	}
	return v.Err(CodeValidationFailed, "invalid directory change")
}
