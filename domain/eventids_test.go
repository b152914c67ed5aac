package domain

import (
	"testing"
	"time"
)

// The ids below were computed by the formulas the command handlers used
// before ids moved into domain (commit 668d30a), by running the handlers
// against PostgreSQL and reading the ids back. Stored events carry them and
// retried appends are deduplicated by them, so they must never change: a
// failure here is a broken derivation, not a test to update.
func TestEventIDsMatchTheStoredOnes(t *testing.T) {
	req := Request{
		Tenant: "org-1", EventType: "PAYMENT_SUCCESS", Scope: ScopeUsers,
		RecipientIDs: []string{"alice", "bob"},
		Data:         map[string]any{"payment": map[string]any{"subject": "Order #42"}},
		OccurredAt:   time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC),
	}
	requested := NewNotificationRequested(req, "key-1", []string{"alice", "bob"})
	// The recipients key ignores order: the same people resolved in another
	// order are the same request.
	reordered := NewNotificationRequested(req, "key-1", []string{"bob", "alice"})
	created := requested.Notifications()
	alice, bob := created[0], created[1]
	aliceStream := NotificationStream(alice.ID)
	inbox := InboxStream("org-1", "alice")
	dir := DirectoryStream("org-1")
	at := time.Date(2026, 11, 28, 19, 32, 42, 0, time.UTC)
	org, shop := Group{GroupOrg, "org-1"}, Group{GroupMerchant, "shop-1"}
	join := func(g Group, user string) MemberJoined {
		return MemberJoined{Tenant: "org-1", Kind: g.Kind, GroupID: g.ID, UserID: user}
	}

	for _, c := range []struct {
		name, got, want string
	}{
		{"request stream", RequestStream(requested.RequestID), "request-d77e311b-d39a-5191-be3c-ebe857ba5a72"},
		{"alice's stream", aliceStream, "notification-370c7c01-5a68-5d40-951d-a2d7b67b2ba6"},
		{"bob's stream", NotificationStream(bob.ID), "notification-c93bcf6c-faa3-57f0-b3a3-2ebd7d4826bb"},
		{"inbox stream", inbox, "inbox-918292c0-7120-59df-b405-0c591443b866"},
		{"requested", requested.EventID(RequestStream(requested.RequestID), 0), "046d35aa-078b-5467-a8a0-e7f93c168d3a"},
		{"requested, recipients reordered", reordered.EventID(RequestStream(reordered.RequestID), 0), "046d35aa-078b-5467-a8a0-e7f93c168d3a"},
		{"alice created", alice.EventID(aliceStream, 0), "bac67437-d88f-5133-81f8-98c104635651"},
		{"bob created", bob.EventID(NotificationStream(bob.ID), 0), "190f1131-d36c-5c00-841a-118369bad8c6"},
		{"read v1", NotificationRead{ID: alice.ID, Tenant: "org-1", RecipientID: "alice", ReadAt: at}.EventID(aliceStream, 1), "2ce13a8f-fd5c-5958-9245-3b71b9f2472d"},
		{"archived v2", NotificationArchived{ID: alice.ID}.EventID(aliceStream, 2), "2131431b-db44-5bb5-ae08-104aeec5f05e"},
		{"unread v3", NotificationUnread{ID: alice.ID}.EventID(aliceStream, 3), "d3532f98-cd53-5c24-89a3-bc2636a83f45"},
		{"unarchived v4", NotificationUnarchived{ID: alice.ID}.EventID(aliceStream, 4), "01e6ba41-2ca1-5632-9bab-0383630c044f"},
		{"read-all v0", InboxMarkedRead{Tenant: "org-1", RecipientID: "alice", ReadAt: at}.EventID(inbox, 0), "9aa5e332-9faf-55e1-bc3b-0c3bc683bdec"},
		{"read-all v1", InboxMarkedRead{Tenant: "org-1", RecipientID: "alice", ReadAt: at}.EventID(inbox, 1), "254db6b8-97bb-5f78-90f1-ca5d93bacb03"},
		{"alice joins org v0", join(org, "alice").EventID(dir, 0), "7fc30104-0a4d-5c06-b4a9-c6f84311c416"},
		{"bob joins org v1", join(org, "bob").EventID(dir, 1), "caf04bb1-5d35-5e34-a0f7-271756d3614b"},
		{"alice leaves org v2", MemberLeft{Tenant: "org-1", Kind: GroupOrg, GroupID: "org-1", UserID: "alice"}.EventID(dir, 2), "0e8898f1-3d77-50c7-87b5-81f3c9b884ec"},
		{"carol joins shop v3", join(shop, "carol").EventID(dir, 3), "0480c1de-4a94-5724-95d6-3fe3c302aeaf"},
	} {
		if c.got != c.want {
			t.Errorf("%s: %s, want %s", c.name, c.got, c.want)
		}
	}
}

// The ids tell apart what must not pass for one another: another change at
// the same version, the same change at another version, another member, and
// a request that resolved other recipients.
func TestEventIDsDistinguishDecisions(t *testing.T) {
	s := NotificationStream(NotificationID(RequestID("org-1", "k"), "alice"))
	if (NotificationRead{}).EventID(s, 1) == (NotificationArchived{}).EventID(s, 1) ||
		(NotificationRead{}).EventID(s, 1) == (NotificationRead{}).EventID(s, 3) {
		t.Fatal("a change's id does not name its type and version")
	}
	dir := DirectoryStream("org-1")
	a := MemberJoined{Tenant: "org-1", Kind: GroupOrg, GroupID: "org-1", UserID: "alice"}
	b := a
	b.UserID = "bob"
	if a.EventID(dir, 0) == b.EventID(dir, 0) || a.EventID(dir, 0) == (MemberLeft(a)).EventID(dir, 0) {
		t.Fatal("a directory change's id does not name its member and kind")
	}
	req := validRequest()
	one := NewNotificationRequested(req, "k", []string{"alice"})
	two := NewNotificationRequested(req, "k", []string{"alice", "bob"})
	if one.EventID(RequestStream(one.RequestID), 0) == two.EventID(RequestStream(two.RequestID), 0) {
		t.Fatal("requests that resolved other recipients share an id")
	}
}
