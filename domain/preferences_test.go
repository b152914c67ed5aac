package domain

import (
	"encoding/json"
	"errors"
	"maps"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
	// The zone database, built into the test binary, so that these tests
	// do not depend on the machine's; time.LoadLocation still prefers the
	// machine's when it has one.
	_ "time/tzdata"
)

func prefBool(b bool) *bool       { return &b }
func prefString(s string) *string { return &s }
func prefZone(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func TestEffectiveResolvesEachValueUserOverTenantOverDefault(t *testing.T) {
	tenant := PreferenceSettings{
		GlobalSilent: prefBool(true),
		Categories: map[string]map[string]bool{
			"page.created":    {PrefPush: false, PrefEmail: false},
			"PAYMENT_SUCCESS": {PrefSMS: false},
		},
		QuietHours: &QuietHoursSettings{Start: prefString("21:00"), End: prefString("07:00"), Mode: prefString(QuietDefer)},
	}
	user := PreferenceSettings{
		Categories: map[string]map[string]bool{
			"page.created": {PrefPush: true, PrefApp: false},
			"comment.new":  {PrefEmail: false},
		},
		QuietHours: &QuietHoursSettings{Start: prefString("22:30"), Timezone: prefString("Europe/Paris")},
	}
	on := func(v bool, src string) SourcedBool { return SourcedBool{v, src} }
	str := func(v, src string) SourcedString { return SourcedString{v, src} }

	for _, c := range []struct {
		name       string
		user       PreferenceSettings
		want       EffectivePreferences
		wantActive bool
	}{
		{
			name: "user over tenant, per value",
			user: user,
			want: EffectivePreferences{
				GlobalSilent: on(true, SourceTenant),
				Categories: map[string]map[string]SourcedBool{
					"page.created": {
						PrefApp:   on(false, SourceUser),
						PrefPush:  on(true, SourceUser),    // the user's on beats the tenant's off
						PrefEmail: on(false, SourceTenant), // the user says nothing: the tenant's
						PrefSMS:   on(true, SourceDefault), // neither says
					},
					"PAYMENT_SUCCESS": {
						PrefApp: on(true, SourceDefault), PrefPush: on(true, SourceDefault),
						PrefEmail: on(true, SourceDefault), PrefSMS: on(false, SourceTenant),
					},
					"comment.new": {
						PrefApp: on(true, SourceDefault), PrefPush: on(true, SourceDefault),
						PrefEmail: on(false, SourceUser), PrefSMS: on(true, SourceDefault),
					},
				},
				QuietHours: EffectiveQuietHours{
					Start:    str("22:30", SourceUser),
					End:      str("07:00", SourceTenant),
					Timezone: str("Europe/Paris", SourceUser),
					Mode:     str(QuietDefer, SourceTenant),
				},
			},
			wantActive: true,
		},
		{
			name: "the user sets nothing",
			user: PreferenceSettings{GlobalSilent: prefBool(false)},
			want: EffectivePreferences{
				GlobalSilent: on(false, SourceUser),
				Categories: map[string]map[string]SourcedBool{
					"page.created": {
						PrefApp: on(true, SourceDefault), PrefPush: on(false, SourceTenant),
						PrefEmail: on(false, SourceTenant), PrefSMS: on(true, SourceDefault),
					},
					"PAYMENT_SUCCESS": {
						PrefApp: on(true, SourceDefault), PrefPush: on(true, SourceDefault),
						PrefEmail: on(true, SourceDefault), PrefSMS: on(false, SourceTenant),
					},
				},
				QuietHours: EffectiveQuietHours{
					Start:    str("21:00", SourceTenant),
					End:      str("07:00", SourceTenant),
					Timezone: str("", SourceDefault),
					Mode:     str(QuietDefer, SourceTenant),
				},
			},
			wantActive: false, // no zone at any level: no quiet hours
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := Effective(c.user, tenant)
			if got.GlobalSilent != c.want.GlobalSilent {
				t.Errorf("globalSilent = %+v, want %+v", got.GlobalSilent, c.want.GlobalSilent)
			}
			if !reflect.DeepEqual(got.Categories, c.want.Categories) {
				t.Errorf("categories = %+v\nwant %+v", got.Categories, c.want.Categories)
			}
			q, w := got.QuietHours, c.want.QuietHours
			if q.Start != w.Start || q.End != w.End || q.Timezone != w.Timezone || q.Mode != w.Mode || q.Active != c.wantActive {
				t.Errorf("quiet hours = %+v, want %+v, active %v", q, w, c.wantActive)
			}
		})
	}

	t.Run("nothing set anywhere", func(t *testing.T) {
		got := Effective(PreferenceSettings{}, PreferenceSettings{})
		if got.GlobalSilent != on(false, SourceDefault) || len(got.Categories) != 0 || got.Categories == nil {
			t.Errorf("defaults = %+v", got)
		}
		if q := got.QuietHours; q.Active || q.Mode != str(QuietSuppress, SourceDefault) || q.Start != str("", SourceDefault) {
			t.Errorf("default quiet hours = %+v", q)
		}
		if s := got.Switch("anything", PrefPush); s != on(true, SourceDefault) {
			t.Errorf("switch of an unknown category = %+v", s)
		}
	})

	t.Run("start and end from different levels that are equal make no window", func(t *testing.T) {
		got := Effective(
			PreferenceSettings{QuietHours: &QuietHoursSettings{Start: prefString("07:00"), Timezone: prefString("UTC")}},
			PreferenceSettings{QuietHours: &QuietHoursSettings{End: prefString("07:00")}},
		)
		if got.QuietHours.Active {
			t.Error("an empty window is active")
		}
	})
}

func TestEffectivePreferencesJSON(t *testing.T) {
	got, err := json.Marshal(Effective(
		PreferenceSettings{Categories: map[string]map[string]bool{"page.created": {PrefPush: false}},
			QuietHours: &QuietHoursSettings{Start: prefString("22:00"), End: prefString("07:00"), Timezone: prefString("Europe/Paris")}},
		PreferenceSettings{},
	))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"globalSilent":{"value":false,"source":"default"},
	 "categories":{"page.created":{
	   "app":{"value":true,"source":"default"},"push":{"value":false,"source":"user"},
	   "email":{"value":true,"source":"default"},"sms":{"value":true,"source":"default"}}},
	 "quietHours":{"start":{"value":"22:00","source":"user"},"end":{"value":"07:00","source":"user"},
	   "timezone":{"value":"Europe/Paris","source":"user"},"mode":{"value":"suppress","source":"default"},
	   "active":true}}`
	if same, err := sameJSON([]byte(want), got); err != nil || !same {
		t.Fatalf("effective preferences encode as %s (%v)", got, err)
	}
	// Decoded from JSON (a cached answer), it decides the same.
	var decoded EffectivePreferences
	if err := json.Unmarshal(got, &decoded); err != nil {
		t.Fatal(err)
	}
	night := time.Date(2026, 6, 15, 23, 0, 0, 0, prefZone(t, "Europe/Paris"))
	if d := decoded.Decide("other", ChannelEmail, false, night); d.Reason != SuppressedQuietHours {
		t.Errorf("decoded preferences decide %+v at night", d)
	}
}

// quietCase is a delivery at one instant and what quiet hours make of it.
type quietCase struct {
	name string
	now  time.Time
	// held: the instant is inside the window. With mode defer, until is
	// when the window ends, written in the zone, and untilUTC the same
	// instant in UTC, so that a slip in either spelling shows.
	held            bool
	until, untilUTC time.Time
}

func TestDecideQuietHoursOverTimeZones(t *testing.T) {
	paris := prefZone(t, "Europe/Paris")
	newYork := prefZone(t, "America/New_York")
	saigon := prefZone(t, "Asia/Ho_Chi_Minh")
	at := func(loc *time.Location, y int, m time.Month, d, h, min int) time.Time {
		return time.Date(y, m, d, h, min, 0, 0, loc)
	}
	utc := func(y int, m time.Month, d, h, min int) time.Time { return at(time.UTC, y, m, d, h, min) }
	// held builds a case inside the window.
	held := func(name string, now, until, untilUTC time.Time) quietCase {
		return quietCase{name, now, true, until, untilUTC}
	}
	free := func(name string, now time.Time) quietCase { return quietCase{name: name, now: now} }

	for _, zone := range []struct {
		name, timezone, start, end string
		cases                      []quietCase
	}{
		{
			name: "Paris, an ordinary summer night", timezone: "Europe/Paris", start: "22:00", end: "07:00",
			cases: []quietCase{
				free("21:59", at(paris, 2026, 6, 15, 21, 59)),
				held("22:00", at(paris, 2026, 6, 15, 22, 0), at(paris, 2026, 6, 16, 7, 0), utc(2026, 6, 16, 5, 0)),
				held("03:00", at(paris, 2026, 6, 16, 3, 0), at(paris, 2026, 6, 16, 7, 0), utc(2026, 6, 16, 5, 0)),
				held("06:59:59", at(paris, 2026, 6, 16, 6, 59).Add(59*time.Second), at(paris, 2026, 6, 16, 7, 0), utc(2026, 6, 16, 5, 0)),
				free("07:00", at(paris, 2026, 6, 16, 7, 0)),
				// The night across the end of a month: the end is on the 1st.
				held("23:30 on the 30th", at(paris, 2026, 6, 30, 23, 30), at(paris, 2026, 7, 1, 7, 0), utc(2026, 7, 1, 5, 0)),
			},
		},
		{
			// 2026-03-29 02:00 CET becomes 03:00 CEST, at 01:00 UTC.
			name: "Paris, spring forward", timezone: "Europe/Paris", start: "22:00", end: "07:00",
			cases: []quietCase{
				// The window starts at UTC+1 and ends at UTC+2.
				held("23:00 CET the evening before", utc(2026, 3, 28, 22, 0), at(paris, 2026, 3, 29, 7, 0), utc(2026, 3, 29, 5, 0)),
				held("01:59 CET", utc(2026, 3, 29, 0, 59), at(paris, 2026, 3, 29, 7, 0), utc(2026, 3, 29, 5, 0)),
				held("03:00 CEST, the first minute after the jump", utc(2026, 3, 29, 1, 0), at(paris, 2026, 3, 29, 7, 0), utc(2026, 3, 29, 5, 0)),
				held("06:59 CEST", utc(2026, 3, 29, 4, 59), at(paris, 2026, 3, 29, 7, 0), utc(2026, 3, 29, 5, 0)),
				free("07:00 CEST", utc(2026, 3, 29, 5, 0)),
				free("07:30 CEST (06:30 at the winter offset)", utc(2026, 3, 29, 5, 30)),
			},
		},
		{
			name: "Paris, a window over the skipped hour", timezone: "Europe/Paris", start: "01:30", end: "02:30",
			cases: []quietCase{
				free("01:29 CET", utc(2026, 3, 29, 0, 29)),
				// 02:30 is never shown: the clock jumps from 02:00 CET to
				// 03:00 CEST, and the window is over then.
				held("01:45 CET", utc(2026, 3, 29, 0, 45), at(paris, 2026, 3, 29, 3, 0), utc(2026, 3, 29, 1, 0)),
				free("03:00 CEST", utc(2026, 3, 29, 1, 0)),
			},
		},
		{
			// 2026-10-25 03:00 CEST becomes 02:00 CET, at 01:00 UTC.
			name: "Paris, fall back", timezone: "Europe/Paris", start: "22:00", end: "07:00",
			cases: []quietCase{
				held("22:30 CEST the evening before", utc(2026, 10, 24, 20, 30), at(paris, 2026, 10, 25, 7, 0), utc(2026, 10, 25, 6, 0)),
				held("02:30 CEST", utc(2026, 10, 25, 0, 30), at(paris, 2026, 10, 25, 7, 0), utc(2026, 10, 25, 6, 0)),
				held("02:30 CET, again", utc(2026, 10, 25, 1, 30), at(paris, 2026, 10, 25, 7, 0), utc(2026, 10, 25, 6, 0)),
				held("06:30 CET (07:30 at the summer offset)", utc(2026, 10, 25, 5, 30), at(paris, 2026, 10, 25, 7, 0), utc(2026, 10, 25, 6, 0)),
				free("07:00 CET", utc(2026, 10, 25, 6, 0)),
			},
		},
		{
			// 02:00–02:30 is shown twice; each pass ends at its own 02:30.
			name: "Paris, a window over the repeated hour", timezone: "Europe/Paris", start: "02:00", end: "02:30",
			cases: []quietCase{
				held("02:10 CEST", utc(2026, 10, 25, 0, 10), utc(2026, 10, 25, 0, 30).In(paris), utc(2026, 10, 25, 0, 30)),
				free("02:40 CEST", utc(2026, 10, 25, 0, 40)),
				held("02:10 CET", utc(2026, 10, 25, 1, 10), at(paris, 2026, 10, 25, 2, 30), utc(2026, 10, 25, 1, 30)),
				free("02:30 CET", utc(2026, 10, 25, 1, 30)),
			},
		},
		{
			// 2026-03-08 02:00 EST becomes 03:00 EDT, at 07:00 UTC.
			name: "New York, spring forward", timezone: "America/New_York", start: "22:00", end: "07:00",
			cases: []quietCase{
				held("01:30 EST", utc(2026, 3, 8, 6, 30), at(newYork, 2026, 3, 8, 7, 0), utc(2026, 3, 8, 11, 0)),
				held("03:00 EDT", utc(2026, 3, 8, 7, 0), at(newYork, 2026, 3, 8, 7, 0), utc(2026, 3, 8, 11, 0)),
				held("06:59 EDT (05:59 at the winter offset)", utc(2026, 3, 8, 10, 59), at(newYork, 2026, 3, 8, 7, 0), utc(2026, 3, 8, 11, 0)),
				free("07:00 EDT", utc(2026, 3, 8, 11, 0)),
			},
		},
		{
			name: "New York, a window over the skipped hour", timezone: "America/New_York", start: "01:30", end: "02:30",
			cases: []quietCase{
				free("01:29 EST", utc(2026, 3, 8, 6, 29)),
				held("01:30 EST", utc(2026, 3, 8, 6, 30), at(newYork, 2026, 3, 8, 3, 0), utc(2026, 3, 8, 7, 0)),
				held("01:59 EST", utc(2026, 3, 8, 6, 59), at(newYork, 2026, 3, 8, 3, 0), utc(2026, 3, 8, 7, 0)),
				free("03:00 EDT", utc(2026, 3, 8, 7, 0)),
				free("03:15 EDT", utc(2026, 3, 8, 7, 15)),
			},
		},
		{
			// 2026-11-01 02:00 EDT becomes 01:00 EST, at 06:00 UTC.
			name: "New York, fall back", timezone: "America/New_York", start: "22:00", end: "07:00",
			cases: []quietCase{
				held("01:30 EDT", utc(2026, 11, 1, 5, 30), at(newYork, 2026, 11, 1, 7, 0), utc(2026, 11, 1, 12, 0)),
				held("01:30 EST, again", utc(2026, 11, 1, 6, 30), at(newYork, 2026, 11, 1, 7, 0), utc(2026, 11, 1, 12, 0)),
				held("02:30 EST", utc(2026, 11, 1, 7, 30), at(newYork, 2026, 11, 1, 7, 0), utc(2026, 11, 1, 12, 0)),
				held("06:30 EST (07:30 at the summer offset)", utc(2026, 11, 1, 11, 30), at(newYork, 2026, 11, 1, 7, 0), utc(2026, 11, 1, 12, 0)),
				free("07:00 EST", utc(2026, 11, 1, 12, 0)),
			},
		},
		{
			name: "New York, a window over the repeated hour", timezone: "America/New_York", start: "01:00", end: "01:30",
			cases: []quietCase{
				held("01:10 EDT", utc(2026, 11, 1, 5, 10), utc(2026, 11, 1, 5, 30).In(newYork), utc(2026, 11, 1, 5, 30)),
				free("01:40 EDT", utc(2026, 11, 1, 5, 40)),
				held("01:10 EST", utc(2026, 11, 1, 6, 10), utc(2026, 11, 1, 6, 30).In(newYork), utc(2026, 11, 1, 6, 30)),
				free("01:30 EST", utc(2026, 11, 1, 6, 30)),
			},
		},
		{
			// UTC+7 all year.
			name: "Ho Chi Minh City, from UTC instants", timezone: "Asia/Ho_Chi_Minh", start: "22:00", end: "07:00",
			cases: []quietCase{
				free("21:59", utc(2026, 6, 15, 14, 59)),
				held("22:30", utc(2026, 6, 15, 15, 30), at(saigon, 2026, 6, 16, 7, 0), utc(2026, 6, 16, 0, 0)),
				held("06:59, the day before in UTC", utc(2026, 6, 15, 23, 59), at(saigon, 2026, 6, 16, 7, 0), utc(2026, 6, 16, 0, 0)),
				free("07:00", utc(2026, 6, 16, 0, 0)),
			},
		},
	} {
		for _, mode := range []string{QuietSuppress, QuietDefer} {
			user := PreferenceSettings{QuietHours: &QuietHoursSettings{
				Start: prefString(zone.start), End: prefString(zone.end), Timezone: prefString(zone.timezone), Mode: prefString(mode),
			}}
			if p := user.Problems(); len(p) != 0 {
				t.Fatalf("%s: %v", zone.name, p)
			}
			prefs := Effective(user, PreferenceSettings{})
			for _, c := range zone.cases {
				t.Run(zone.name+"/"+mode+"/"+c.name, func(t *testing.T) {
					if c.held && !c.until.Equal(c.untilUTC) {
						t.Fatalf("the case's two spellings of the end differ: %v, %v", c.until, c.untilUTC)
					}
					for _, channel := range []string{ChannelPush, ChannelEmail, ChannelSMS} {
						d := prefs.Decide("page.created", channel, false, c.now)
						switch {
						case !c.held:
							if !d.Deliver || d.Reason != "" || d.DeferUntil != nil {
								t.Errorf("%s at %v: %+v, want delivered", channel, c.now, d)
							}
						case d.Deliver || d.Reason != SuppressedQuietHours:
							t.Errorf("%s at %v: %+v, want held by quiet hours", channel, c.now, d)
						case mode == QuietSuppress && d.DeferUntil != nil:
							t.Errorf("%s at %v: suppressed with a deferral to %v", channel, c.now, d.DeferUntil)
						case mode == QuietDefer && (d.DeferUntil == nil || !d.DeferUntil.Equal(c.until) || !d.DeferUntil.Equal(c.untilUTC)):
							t.Errorf("%s at %v: deferred until %v, want %v (%v)", channel, c.now, d.DeferUntil, c.until, c.untilUTC.In(c.until.Location()))
						}
					}
					// The inbox and the socket are never held.
					if d := prefs.Decide("page.created", ChannelInApp, false, c.now); !d.Deliver {
						t.Errorf("in_app at %v: %+v", c.now, d)
					}
				})
			}
		}
	}
}

func TestDecideOrder(t *testing.T) {
	night := time.Date(2026, 6, 15, 23, 0, 0, 0, time.UTC)
	day := time.Date(2026, 6, 15, 12, 0, 0, 0, time.UTC)
	quiet := &QuietHoursSettings{Start: prefString("22:00"), End: prefString("07:00"), Timezone: prefString("UTC")}
	tenant := PreferenceSettings{Categories: map[string]map[string]bool{"billing": {PrefEmail: false, PrefPush: false}}}
	deliver := PreferenceDecision{Deliver: true}
	off := PreferenceDecision{Reason: SuppressedCategoryOff}
	silent := PreferenceDecision{Reason: SuppressedGlobalSilent}
	quieted := PreferenceDecision{Reason: SuppressedQuietHours}

	for _, c := range []struct {
		name     string
		user     PreferenceSettings
		category string
		channel  string
		critical bool
		now      time.Time
		want     PreferenceDecision
	}{
		{"the tenant's off beats critical", PreferenceSettings{}, "billing", ChannelEmail, true, day, off},
		{"the tenant's off", PreferenceSettings{}, "billing", ChannelEmail, false, day, off},
		{"the tenant's off, on another channel", PreferenceSettings{}, "billing", ChannelSMS, true, day, deliver},
		{"the user's on overrides the tenant's off", PreferenceSettings{Categories: map[string]map[string]bool{"billing": {PrefEmail: true}}}, "billing", ChannelEmail, false, day, deliver},
		{"critical beats global silence", PreferenceSettings{GlobalSilent: prefBool(true)}, "alerts", ChannelPush, true, day, deliver},
		{"critical beats quiet hours", PreferenceSettings{QuietHours: quiet}, "alerts", ChannelSMS, true, night, deliver},
		{"critical beats the user's own off", PreferenceSettings{Categories: map[string]map[string]bool{"alerts": {PrefPush: false}}}, "alerts", ChannelPush, true, day, deliver},
		{"global silence", PreferenceSettings{GlobalSilent: prefBool(true)}, "alerts", ChannelPush, false, day, silent},
		{"global silence holds in_app too", PreferenceSettings{GlobalSilent: prefBool(true)}, "alerts", ChannelInApp, false, day, silent},
		{"global silence beats the user's off", PreferenceSettings{GlobalSilent: prefBool(true), Categories: map[string]map[string]bool{"alerts": {PrefPush: false}}}, "alerts", ChannelPush, false, day, silent},
		{"the user's off", PreferenceSettings{Categories: map[string]map[string]bool{"alerts": {PrefApp: false}}}, "alerts", ChannelInApp, false, day, off},
		{"the user's off beats quiet hours", PreferenceSettings{QuietHours: quiet, Categories: map[string]map[string]bool{"alerts": {PrefSMS: false}}}, "alerts", ChannelSMS, false, night, off},
		{"the user's off is per channel", PreferenceSettings{Categories: map[string]map[string]bool{"alerts": {PrefSMS: false}}}, "alerts", ChannelEmail, false, day, deliver},
		{"quiet hours", PreferenceSettings{QuietHours: quiet}, "alerts", ChannelEmail, false, night, quieted},
		{"in_app is never held by quiet hours", PreferenceSettings{QuietHours: quiet}, "alerts", ChannelInApp, false, night, deliver},
		{"quiet hours outside the window", PreferenceSettings{QuietHours: quiet}, "alerts", ChannelEmail, false, day, deliver},
		{"an unknown category is on", PreferenceSettings{Categories: map[string]map[string]bool{"alerts": {PrefPush: false}}}, "never.heard.of", ChannelPush, false, day, deliver},
		{"nothing set", PreferenceSettings{}, "alerts", ChannelSMS, false, night, deliver},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := Effective(c.user, tenant).Decide(c.category, c.channel, c.critical, c.now)
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("Decide = %+v, want %+v", got, c.want)
			}
		})
	}
}

func TestPreferenceChannel(t *testing.T) {
	for in, want := range map[string]string{
		ChannelInApp: PrefApp, ChannelPush: PrefPush, ChannelEmail: PrefEmail, ChannelSMS: PrefSMS,
		"fax": "", "app": "",
	} {
		if got := PreferenceChannel(in); got != want {
			t.Errorf("PreferenceChannel(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPreferenceProblems(t *testing.T) {
	quiet := func(start, end, timezone, mode string) PreferenceSettings {
		return PreferenceSettings{QuietHours: &QuietHoursSettings{Start: prefString(start), End: prefString(end), Timezone: prefString(timezone), Mode: prefString(mode)}}
	}
	many := map[string]map[string]bool{}
	for i := range MaxPreferenceCategories + 1 {
		many["c"+strconv.Itoa(i)] = map[string]bool{PrefApp: true}
	}
	atMost := maps.Clone(many)
	delete(atMost, "c0")

	for _, c := range []struct {
		name  string
		s     PreferenceSettings
		field string // "" when s is fine
	}{
		{"the brief's document", quiet("22:00", "07:00", "Europe/Paris", "suppress"), ""},
		{"defer", quiet("00:00", "23:59", "UTC", "defer"), ""},
		{"a partial window", PreferenceSettings{QuietHours: &QuietHoursSettings{Timezone: prefString("Asia/Ho_Chi_Minh")}}, ""},
		{"nothing", PreferenceSettings{}, ""},
		{"an unknown zone", quiet("22:00", "07:00", "Mars/Olympus_Mons", "suppress"), "quietHours.timezone"},
		{"Local", quiet("22:00", "07:00", "Local", "suppress"), "quietHours.timezone"},
		{"an empty zone", quiet("22:00", "07:00", "", "suppress"), "quietHours.timezone"},
		{"a path for a zone", quiet("22:00", "07:00", "../../etc/passwd", "suppress"), "quietHours.timezone"},
		{"24:00", quiet("24:00", "07:00", "UTC", "suppress"), "quietHours.start"},
		{"7:00, one digit", quiet("22:00", "7:00", "UTC", "suppress"), "quietHours.end"},
		{"22:60", quiet("22:60", "07:00", "UTC", "suppress"), "quietHours.start"},
		{"22h00", quiet("22h00", "07:00", "UTC", "suppress"), "quietHours.start"},
		{"equal start and end", quiet("07:00", "07:00", "UTC", "suppress"), "quietHours.end"},
		{"a bad mode", quiet("22:00", "07:00", "UTC", "snooze"), "quietHours.mode"},
		{"an unknown channel", PreferenceSettings{Categories: map[string]map[string]bool{"page.created": {PrefApp: true, "fax": false}}}, "categories.page.created.fax"},
		{"in_app is not a preference channel", PreferenceSettings{Categories: map[string]map[string]bool{"page.created": {"in_app": false}}}, "categories.page.created.in_app"},
		{"a blank category", PreferenceSettings{Categories: map[string]map[string]bool{" ": {PrefApp: true}}}, "categories. "},
		{"a control character", PreferenceSettings{Categories: map[string]map[string]bool{"page\ncreated": {PrefApp: true}}}, "categories.page\ncreated"},
		{"a long category", PreferenceSettings{Categories: map[string]map[string]bool{strings.Repeat("a", 101): {PrefApp: true}}}, "categories." + strings.Repeat("a", 101)},
		{"200 categories", PreferenceSettings{Categories: atMost}, ""},
		{"too many categories", PreferenceSettings{Categories: many}, "categories"},
	} {
		t.Run(c.name, func(t *testing.T) {
			problems := c.s.Problems()
			err := c.s.Validate()
			if c.field == "" {
				if len(problems) != 0 || err != nil {
					t.Fatalf("problems %v, %v", problems, err)
				}
				return
			}
			if len(problems) != 1 || problems[c.field] == "" {
				t.Fatalf("problems %q, want one of %q", problems, c.field)
			}
			var e *Error
			if !errors.As(err, &e) || e.Code != CodePreferencesInvalid || e.Details["fields"].(map[string]any)[c.field] == nil {
				t.Fatalf("Validate = %v", err)
			}
		})
	}

	t.Run("a document of many bad keys reports a bounded number", func(t *testing.T) {
		bad := map[string]map[string]bool{}
		for i := range 100 {
			bad["c"+strconv.Itoa(i)] = map[string]bool{"fax": true, "pager": true}
		}
		if n := len(PreferenceSettings{Categories: bad}.Problems()); n == 0 || n > maxCategoryProblems {
			t.Fatalf("%d problems", n)
		}
	})
}

func TestMergePatch(t *testing.T) {
	current := PreferenceSettings{
		GlobalSilent: prefBool(false),
		Categories: map[string]map[string]bool{
			"page.created": {PrefApp: true, PrefPush: false},
			"billing":      {PrefSMS: false},
		},
		QuietHours: &QuietHoursSettings{Start: prefString("22:00"), End: prefString("07:00"), Timezone: prefString("Europe/Paris"), Mode: prefString(QuietDefer)},
	}
	before, _ := json.Marshal(current)

	for _, c := range []struct {
		name, patch, want string
	}{
		{"an empty patch changes nothing", `{}`,
			`{"globalSilent":false,"categories":{"page.created":{"app":true,"push":false},"billing":{"sms":false}},
			  "quietHours":{"start":"22:00","end":"07:00","timezone":"Europe/Paris","mode":"defer"}}`},
		{"null deletes a value", `{"globalSilent":null,"quietHours":{"mode":null}}`,
			`{"categories":{"page.created":{"app":true,"push":false},"billing":{"sms":false}},
			  "quietHours":{"start":"22:00","end":"07:00","timezone":"Europe/Paris"}}`},
		{"objects merge", `{"globalSilent":true,"categories":{"page.created":{"push":true,"email":false},"comment.new":{"sms":false}},"quietHours":{"start":"23:00"}}`,
			`{"globalSilent":true,"categories":{"page.created":{"app":true,"push":true,"email":false},"billing":{"sms":false},"comment.new":{"sms":false}},
			  "quietHours":{"start":"23:00","end":"07:00","timezone":"Europe/Paris","mode":"defer"}}`},
		{"null deletes a channel", `{"categories":{"page.created":{"push":null}}}`,
			`{"globalSilent":false,"categories":{"page.created":{"app":true},"billing":{"sms":false}},
			  "quietHours":{"start":"22:00","end":"07:00","timezone":"Europe/Paris","mode":"defer"}}`},
		{"null deletes a category", `{"categories":{"page.created":null}}`,
			`{"globalSilent":false,"categories":{"billing":{"sms":false}},
			  "quietHours":{"start":"22:00","end":"07:00","timezone":"Europe/Paris","mode":"defer"}}`},
		{"a category left with no channel goes", `{"categories":{"billing":{"sms":null}}}`,
			`{"globalSilent":false,"categories":{"page.created":{"app":true,"push":false}},
			  "quietHours":{"start":"22:00","end":"07:00","timezone":"Europe/Paris","mode":"defer"}}`},
		{"null deletes every category and quiet hour", `{"categories":null,"quietHours":null}`, `{"globalSilent":false}`},
		{"quiet hours left with no value go", `{"quietHours":{"start":null,"end":null,"timezone":null,"mode":null}}`,
			`{"globalSilent":false,"categories":{"page.created":{"app":true,"push":false},"billing":{"sms":false}}}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := MergePatch(current, []byte(c.patch))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := json.Marshal(got)
			if same, err := sameJSON([]byte(c.want), b); err != nil || !same {
				t.Errorf("merged to %s, want %s (%v)", b, c.want, err)
			}
			if after, _ := json.Marshal(current); string(after) != string(before) {
				t.Errorf("the patch modified current: %s", after)
			}
		})
	}

	t.Run("onto nothing", func(t *testing.T) {
		got, err := MergePatch(PreferenceSettings{}, []byte(`{"categories":{"a":{"sms":false}},"quietHours":{"timezone":"UTC"}}`))
		if err != nil {
			t.Fatal(err)
		}
		if got.Categories["a"][PrefSMS] || len(got.Categories["a"]) != 1 || *got.QuietHours.Timezone != "UTC" || got.GlobalSilent != nil {
			t.Errorf("merged to %+v", got)
		}
	})

	for _, c := range []struct {
		name, patch string
		field       string
	}{
		{"an array", `[]`, "body"},
		{"null", `null`, "body"},
		{"a string", `"x"`, "body"},
		{"not JSON", `{"globalSilent":`, "body"},
		{"a lone surrogate", `{"categories":{"\udc00":{"sms":false}}}`, "body"},
		{"a string for a bool", `{"globalSilent":"true"}`, "globalSilent"},
		{"categories not an object", `{"categories":["page.created"]}`, "categories"},
		{"a category not an object", `{"categories":{"page.created":true}}`, "categories.page.created"},
		{"a switch not a bool", `{"categories":{"page.created":{"sms":0}}}`, "categories.page.created.sms"},
		{"quiet hours not an object", `{"quietHours":"22:00-07:00"}`, "quietHours"},
		{"a time not a string", `{"quietHours":{"start":2200}}`, "quietHours.start"},
		{"an unknown quiet-hours field", `{"quietHours":{"days":"weekdays"}}`, "quietHours.days"},
		{"an unknown field", `{"silent":true}`, "silent"},
	} {
		t.Run("refuses "+c.name, func(t *testing.T) {
			got, err := MergePatch(current, []byte(c.patch))
			var e *Error
			if !errors.As(err, &e) || e.Code != CodePreferencesInvalid {
				t.Fatalf("MergePatch = %+v, %v", got, err)
			}
			if fields, _ := e.Details["fields"].(map[string]any); fields[c.field] == nil {
				t.Fatalf("the error names %v, want %q", e.Details["fields"], c.field)
			}
		})
	}

	t.Run("the result's values are the caller's to check", func(t *testing.T) {
		got, err := MergePatch(current, []byte(`{"quietHours":{"timezone":"Local"},"categories":{"x":{"fax":true}}}`))
		if err != nil {
			t.Fatal(err)
		}
		if p := got.Problems(); p["quietHours.timezone"] == "" || p["categories.x.fax"] == "" {
			t.Errorf("problems %v", p)
		}
	})
}

func TestPreferencesStreamsAndIDs(t *testing.T) {
	// Stored streams and ids never change: these values pin the
	// derivations, like TestEventIDsMatchTheStoredOnes.
	e := PreferencesChanged{Tenant: "org-1", UserID: "alice", Settings: PreferenceSettings{GlobalSilent: prefBool(true)}}
	stream := PreferencesStream("org-1")
	for _, c := range []struct{ name, got, want string }{
		{"stream", stream, "preferences-" + uuidV5(namespace, "preferences\x00org-1")},
		{"event id", e.EventID(stream, 3), eventID(stream, "PreferencesChanged\x00v3\x00alice\x00"+ContentKey([]byte(`{"globalSilent":true}`)))},
	} {
		if c.got != c.want {
			t.Errorf("%s: %s, want %s", c.name, c.got, c.want)
		}
	}
	if PreferencesStream("org-1") == PreferencesStream("org-2") {
		t.Fatal("two tenants' preferences streams collide")
	}
	other := e
	other.Settings = PreferenceSettings{GlobalSilent: prefBool(false)}
	bob := e
	bob.UserID = "bob"
	if e.EventID(stream, 3) == other.EventID(stream, 3) || e.EventID(stream, 3) == e.EventID(stream, 4) || e.EventID(stream, 3) == bob.EventID(stream, 3) {
		t.Fatal("the id does not name the settings, the user and the version")
	}
	later := e
	later.ChangedAt = time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	if e.EventID(stream, 3) != later.EventID(stream, 3) {
		t.Fatal("a retry decided at another moment gets another id")
	}
}

func TestPreferencesFold(t *testing.T) {
	p := NewTenantPreferences()
	if p.Version != -1 || !reflect.DeepEqual(p.Of("alice"), PreferenceSettings{}) {
		t.Fatalf("new preferences = %+v", p)
	}
	first := PreferenceSettings{GlobalSilent: prefBool(true), Categories: map[string]map[string]bool{"a": {PrefSMS: false}}}
	second := PreferenceSettings{QuietHours: &QuietHoursSettings{Timezone: prefString("UTC")}}
	defaults := PreferenceSettings{GlobalSilent: prefBool(false), Categories: map[string]map[string]bool{"b": {PrefPush: false}}}
	p.Apply(PreferencesChanged{Tenant: "org-1", UserID: "alice", Settings: first}, 0)
	p.Apply(PreferencesChanged{Tenant: "org-1", Settings: defaults}, 1)
	p.Apply(PreferencesChanged{Tenant: "org-1", UserID: "alice", Settings: second}, 2)
	if p.Version != 2 || !reflect.DeepEqual(p.Of("alice"), second) || !reflect.DeepEqual(p.Of(""), defaults) || !reflect.DeepEqual(p.Of("bob"), PreferenceSettings{}) {
		t.Fatalf("folded = %+v, want each level's last settings whole", p)
	}
	if eff := p.EffectiveFor("bob"); eff.Switch("b", PrefPush) != (SourcedBool{Value: false, Source: SourceTenant}) {
		t.Fatalf("bob's effective %+v", eff)
	}
}
