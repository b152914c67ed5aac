package domain

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"
)

// Notification preferences (seed 003). A user's preferences and their
// tenant's defaults are both sparse: a value absent at a level inherits the
// next one, user → tenant → default, and the default is "everything on" (not
// silent, every channel of every category on, no quiet hours). Precedence is
// per value, so a user who turns one channel of one category off keeps every
// other value the tenant chose, and sees the tenant's later changes to them.

// EventPreferencesChanged is the stored type name of a change of preferences.
const EventPreferencesChanged = "PreferencesChanged"

// Error codes of preferences.
const (
	// CodePreferencesInvalid: a preferences document or patch is not of
	// the expected form, or holds values that are not allowed; the details
	// name the fields.
	CodePreferencesInvalid = "preferences.invalid"
)

// Preference channels: the keys of a category's switches. They are the
// delivery channels as people name them; "app" is the in-app channel (the
// inbox and the socket). See PreferenceChannel.
const (
	PrefApp   = "app"
	PrefPush  = "push"
	PrefEmail = "email"
	PrefSMS   = "sms"
)

// PreferenceChannels are the preference channels, in the order documents
// and error messages list them.
var PreferenceChannels = []string{PrefApp, PrefPush, PrefEmail, PrefSMS}

// Sources of an effective value: the level that set it.
const (
	SourceUser    = "user"
	SourceTenant  = "tenant"
	SourceDefault = "default"
)

// Quiet-hours modes: what happens to a delivery that falls in the window.
const (
	// QuietSuppress drops the delivery (the inbox still has the
	// notification).
	QuietSuppress = "suppress"
	// QuietDefer holds the delivery until the window ends.
	QuietDefer = "defer"
)

// Reasons a delivery is not made now, for PreferenceDecision.Reason and
// what delivery events record.
const (
	SuppressedGlobalSilent = "global_silent"
	SuppressedCategoryOff  = "category_off"
	SuppressedQuietHours   = "quiet_hours"
)

// Bounds on a preferences document. Preferences are folded into memory for
// every delivery decision of the user, so their size is bounded.
const (
	// MaxPreferenceCategories bounds the categories of one level.
	MaxPreferenceCategories = 200
	// MaxPreferenceCategoryBytes bounds a category's name, which is an
	// event type or a family of them ("page.created").
	MaxPreferenceCategoryBytes = 100
	// maxTimezoneBytes bounds a zone name before it reaches
	// time.LoadLocation, which reads the zone database for any name it is
	// given; the longest IANA name is about 32 bytes.
	maxTimezoneBytes = 64
	// maxCategoryProblems bounds how many category problems are reported,
	// so that a document of many bad keys does not make an error as large.
	maxCategoryProblems = 20
)

// PreferenceChannel maps a delivery channel (ChannelInApp, ChannelPush,
// ChannelEmail, ChannelSMS) to the preference channel that switches it, or
// "" for a channel preferences do not know.
func PreferenceChannel(deliveryChannel string) string {
	switch deliveryChannel {
	case ChannelInApp:
		return PrefApp
	case ChannelPush:
		return PrefPush
	case ChannelEmail:
		return PrefEmail
	case ChannelSMS:
		return PrefSMS
	}
	return ""
}

// PreferenceSettings are the preferences one level (a user, or a tenant's
// defaults) sets. Every value is optional: nil, or absent from a map, means
// the level does not set it and it inherits. This is also the REST document,
// for PUT as it is and for PATCH as a JSON merge patch (see MergePatch).
type PreferenceSettings struct {
	// GlobalSilent, when true, holds back every delivery that is not
	// critical.
	GlobalSilent *bool `json:"globalSilent,omitempty"`
	// Categories switches channels per category: category name → preference
	// channel (PrefApp…) → on. A channel absent from a category inherits.
	Categories map[string]map[string]bool `json:"categories,omitempty"`
	// QuietHours is a daily window in which push, email and SMS are held.
	QuietHours *QuietHoursSettings `json:"quietHours,omitempty"`
}

// QuietHoursSettings are the quiet-hours values one level sets; each one
// inherits on its own, so a tenant can set the window and a user only their
// time zone.
type QuietHoursSettings struct {
	// Start and End are local wall-clock times, "HH:MM"; the window is
	// [Start, End) and crosses midnight when Start is after End.
	Start *string `json:"start,omitempty"`
	End   *string `json:"end,omitempty"`
	// Timezone is an IANA zone name ("Europe/Paris") in which Start and End
	// are read.
	Timezone *string `json:"timezone,omitempty"`
	// Mode is QuietSuppress or QuietDefer.
	Mode *string `json:"mode,omitempty"`
}

// empty reports whether q sets nothing.
func (q *QuietHoursSettings) empty() bool {
	return q == nil || q.Start == nil && q.End == nil && q.Timezone == nil && q.Mode == nil
}

// Problems says what is wrong with s, by field (globalSilent is a bool and
// cannot be wrong; categories, categories.<name>, categories.<name>.<channel>,
// quietHours.start, quietHours.end, quietHours.timezone, quietHours.mode);
// empty when nothing is. Only what s sets is checked: a partial quiet-hours
// window is fine, as the other values may come from another level.
func (s PreferenceSettings) Problems() map[string]string {
	problems := map[string]string{}
	if len(s.Categories) > MaxPreferenceCategories {
		// The categories themselves are not checked: the document is
		// refused anyway, and the problems of thousands of them would
		// make an error as large as the document.
		problems["categories"] = fmt.Sprintf("must name at most %d categories", MaxPreferenceCategories)
	} else {
		categoryProblems(s.Categories, problems)
	}
	if q := s.QuietHours; q != nil {
		start, startOK := quietTimeProblem(q.Start, "quietHours.start", problems)
		end, endOK := quietTimeProblem(q.End, "quietHours.end", problems)
		if startOK && endOK && start == end {
			problems["quietHours.end"] = "must differ from start: the window would be empty"
		}
		if q.Timezone != nil {
			if _, err := loadZone(*q.Timezone); err != nil {
				problems["quietHours.timezone"] = "must be an IANA time zone, such as Europe/Paris"
			}
		}
		if q.Mode != nil && *q.Mode != QuietSuppress && *q.Mode != QuietDefer {
			problems["quietHours.mode"] = "must be suppress or defer"
		}
	}
	return problems
}

// Validate returns nil when s has no Problems, else an *Error of code
// CodePreferencesInvalid naming them under Details["fields"].
func (s PreferenceSettings) Validate() error {
	var v ValidationError
	for field, problem := range s.Problems() {
		v.Add(field, problem)
	}
	return v.Err(CodePreferencesInvalid, "invalid preferences")
}

// categoryProblems adds the problems of categories to problems, at most
// maxCategoryProblems of them, in name order so the same document always
// reports the same ones.
func categoryProblems(categories map[string]map[string]bool, problems map[string]string) {
	n := 0
	add := func(field, problem string) bool {
		problems[field] = problem
		n++
		return n < maxCategoryProblems
	}
	for _, name := range slices.Sorted(maps.Keys(categories)) {
		field := "categories." + name
		if p := IdentifierProblem(name); p != "" {
			if !add(field, p) {
				return
			}
			continue
		}
		if len(name) > MaxPreferenceCategoryBytes {
			if !add(field, fmt.Sprintf("must be at most %d bytes", MaxPreferenceCategoryBytes)) {
				return
			}
			continue
		}
		for _, channel := range slices.Sorted(maps.Keys(categories[name])) {
			if !slices.Contains(PreferenceChannels, channel) {
				if !add(field+"."+channel, "is not a channel: use app, push, email or sms") {
					return
				}
			}
		}
	}
}

// quietTimeProblem checks an optional "HH:MM" and returns its minute of the
// day, and whether it is set and valid.
func quietTimeProblem(s *string, field string, problems map[string]string) (int, bool) {
	if s == nil {
		return 0, false
	}
	m, ok := parseClock(*s)
	if !ok {
		problems[field] = "must be a time of day as HH:MM, from 00:00 to 23:59"
	}
	return m, ok
}

// parseClock reads "HH:MM" (two digits each, 00:00 to 23:59) as a minute of
// the day. It is strict so that one spelling names one time: "7:00" and
// "24:00" are refused rather than guessed at.
func parseClock(s string) (int, bool) {
	if len(s) != 5 || s[2] != ':' {
		return 0, false
	}
	digit := func(c byte) (int, bool) { return int(c - '0'), c >= '0' && c <= '9' }
	h1, ok1 := digit(s[0])
	h2, ok2 := digit(s[1])
	m1, ok3 := digit(s[3])
	m2, ok4 := digit(s[4])
	h, m := h1*10+h2, m1*10+m2
	if !ok1 || !ok2 || !ok3 || !ok4 || h > 23 || m > 59 {
		return 0, false
	}
	return h*60 + m, true
}

// loadZone loads an IANA zone. time.LoadLocation takes "" for UTC and
// "Local" for the server's zone; neither is a zone a person lives in, and
// "Local" would make a user's quiet hours depend on where Herald runs, so
// both are refused.
func loadZone(name string) (*time.Location, error) {
	if name == "" || name == "Local" || len(name) > maxTimezoneBytes || !CleanText(name) {
		return nil, fmt.Errorf("not an IANA time zone: %q", name)
	}
	return time.LoadLocation(name)
}

// Normalized returns s without what sets nothing: categories that switch no
// channel and quiet hours with no value. Either inherits exactly as if it
// were absent, so normalising changes no effective value, and equal
// preferences are then stored alike. The result shares nothing with s.
func (s PreferenceSettings) Normalized() PreferenceSettings {
	out := PreferenceSettings{}
	if s.GlobalSilent != nil {
		out.GlobalSilent = prefPtr(*s.GlobalSilent)
	}
	for name, channels := range s.Categories {
		if len(channels) == 0 {
			continue
		}
		if out.Categories == nil {
			out.Categories = map[string]map[string]bool{}
		}
		out.Categories[name] = maps.Clone(channels)
	}
	if !s.QuietHours.empty() {
		q := *s.QuietHours
		out.QuietHours = &QuietHoursSettings{Start: prefClone(q.Start), End: prefClone(q.End), Timezone: prefClone(q.Timezone), Mode: prefClone(q.Mode)}
	}
	return out
}

func prefPtr[T any](v T) *T { return &v }

func prefClone[T any](p *T) *T {
	if p == nil {
		return nil
	}
	return prefPtr(*p)
}

// MergePatch applies patch, a JSON merge patch (RFC 7396) of the
// preferences document, to current and returns the result, normalised (see
// Normalized); current is not modified. A null removes a value so that it
// inherits again: "globalSilent": null, "categories": null (every category),
// "categories": {"page.created": null} (one category, all its channels),
// "categories": {"page.created": {"sms": null}}, "quietHours": null (all of
// them) or "quietHours": {"mode": null}. An object merges into what is
// there. A patch that is not a JSON object, or holds a value of the wrong
// type or a field the document does not have, is refused with an *Error of
// code CodePreferencesInvalid naming the fields. The values themselves (a
// channel's name, a time's form) are not checked here: the caller checks
// the result's Problems, as for a whole document.
func MergePatch(current PreferenceSettings, patch []byte) (PreferenceSettings, error) {
	var v ValidationError
	invalid := func(field, problem string) (PreferenceSettings, error) {
		v.Add(field, problem)
		return PreferenceSettings{}, v.Err(CodePreferencesInvalid, "invalid preferences patch")
	}
	// encoding/json would read invalid UTF-8 and lone surrogates as U+FFFD
	// without a word, and a category would be stored under another name.
	if !UTF8JSON(patch) {
		return invalid("body", "must be UTF-8 JSON")
	}
	var top map[string]json.RawMessage
	if !isJSONObject(patch) || json.Unmarshal(patch, &top) != nil {
		return invalid("body", "must be a JSON object")
	}
	out := current.Normalized()
	for key, raw := range top {
		switch key {
		case "globalSilent":
			if isJSONNull(raw) {
				out.GlobalSilent = nil
			} else if b, ok := jsonBool(raw); ok {
				out.GlobalSilent = &b
			} else {
				v.Add(key, "must be true, false or null")
			}
		case "categories":
			mergeCategories(&out, raw, &v)
		case "quietHours":
			mergeQuietHours(&out, raw, &v)
		default:
			v.Add(key, "is not a preference: use globalSilent, categories or quietHours")
		}
	}
	if err := v.Err(CodePreferencesInvalid, "invalid preferences patch"); err != nil {
		return PreferenceSettings{}, err
	}
	return out.Normalized(), nil
}

// mergeCategories merges the patch of "categories" into s, whose maps are
// its own (MergePatch works on a normalised copy).
func mergeCategories(s *PreferenceSettings, raw json.RawMessage, v *ValidationError) {
	if isJSONNull(raw) {
		s.Categories = nil
		return
	}
	var names map[string]json.RawMessage
	if !isJSONObject(raw) || json.Unmarshal(raw, &names) != nil {
		v.Add("categories", "must be an object or null")
		return
	}
	for name, rawChannels := range names {
		field := "categories." + name
		if isJSONNull(rawChannels) {
			delete(s.Categories, name)
			continue
		}
		var channels map[string]json.RawMessage
		if !isJSONObject(rawChannels) || json.Unmarshal(rawChannels, &channels) != nil {
			v.Add(field, "must be an object or null")
			continue
		}
		merged := s.Categories[name]
		if merged == nil {
			merged = map[string]bool{}
		}
		for channel, rawOn := range channels {
			if isJSONNull(rawOn) {
				delete(merged, channel)
			} else if on, ok := jsonBool(rawOn); ok {
				merged[channel] = on
			} else {
				v.Add(field+"."+channel, "must be true, false or null")
			}
		}
		if s.Categories == nil {
			s.Categories = map[string]map[string]bool{}
		}
		s.Categories[name] = merged
	}
}

// mergeQuietHours merges the patch of "quietHours" into s.
func mergeQuietHours(s *PreferenceSettings, raw json.RawMessage, v *ValidationError) {
	if isJSONNull(raw) {
		s.QuietHours = nil
		return
	}
	var fields map[string]json.RawMessage
	if !isJSONObject(raw) || json.Unmarshal(raw, &fields) != nil {
		v.Add("quietHours", "must be an object or null")
		return
	}
	q := s.QuietHours
	if q == nil {
		q = &QuietHoursSettings{}
	}
	for key, rawValue := range fields {
		var target **string
		switch key {
		case "start":
			target = &q.Start
		case "end":
			target = &q.End
		case "timezone":
			target = &q.Timezone
		case "mode":
			target = &q.Mode
		default:
			v.Add("quietHours."+key, "is not a quiet-hours value: use start, end, timezone or mode")
			continue
		}
		var str string
		switch {
		case isJSONNull(rawValue):
			*target = nil
		case json.Unmarshal(rawValue, &str) == nil:
			*target = &str
		default:
			v.Add("quietHours."+key, "must be a string or null")
		}
	}
	s.QuietHours = q
}

// isJSONObject reports whether raw, a valid JSON value, is an object.
// encoding/json decodes null into a map without complaint, so the caller
// cannot tell null from {} by the error alone.
func isJSONObject(raw []byte) bool {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	return len(raw) > 0 && raw[0] == '{'
}

func isJSONNull(raw json.RawMessage) bool {
	return string(bytes.TrimSpace(raw)) == "null"
}

// decodeBool reads a JSON true or false; anything else, a string "true"
// included, is not a bool.
func jsonBool(raw json.RawMessage) (bool, bool) {
	switch string(bytes.TrimSpace(raw)) {
	case "true":
		return true, true
	case "false":
		return false, true
	}
	return false, false
}

// SourcedBool is an effective bool and the level it comes from (SourceUser,
// SourceTenant or SourceDefault), so that a client can show why a switch is
// as it is and offer to reset it.
type SourcedBool struct {
	Value  bool   `json:"value"`
	Source string `json:"source"`
}

// SourcedString is an effective string and the level it comes from; an
// unset value is "" from SourceDefault.
type SourcedString struct {
	Value  string `json:"value"`
	Source string `json:"source"`
}

// EffectivePreferences are a user's preferences with every value resolved,
// user over tenant over default, each with its source. It is the REST
// answer of a user's effective preferences, of the form
//
//	{"globalSilent": {"value": false, "source": "default"},
//	 "categories": {"page.created": {"app": {"value": true, "source": "default"},
//	                                 "push": {"value": false, "source": "user"}, …}},
//	 "quietHours": {"start": {"value": "22:00", "source": "user"},
//	                "end": {"value": "07:00", "source": "tenant"},
//	                "timezone": {"value": "Europe/Paris", "source": "user"},
//	                "mode": {"value": "suppress", "source": "default"},
//	                "active": true}}
//
// where categories holds every category either level names, each with all
// four channels; a category named by neither is on everywhere (see Switch).
type EffectivePreferences struct {
	GlobalSilent SourcedBool                       `json:"globalSilent"`
	Categories   map[string]map[string]SourcedBool `json:"categories"`
	QuietHours   EffectiveQuietHours               `json:"quietHours"`
}

// EffectiveQuietHours is the resolved quiet-hours window. Each value
// resolves on its own, so the window may be assembled from both levels.
type EffectiveQuietHours struct {
	Start    SourcedString `json:"start"`
	End      SourcedString `json:"end"`
	Timezone SourcedString `json:"timezone"`
	// Mode is QuietSuppress unless a level sets it.
	Mode SourcedString `json:"mode"`
	// Active says whether quiet hours apply: start, end and timezone all
	// have a value (from any level), the window is not empty (start and
	// end from different levels can be equal) and the zone is known.
	Active bool `json:"active"`

	// loc is the loaded Timezone when Active, so that deciding each
	// delivery does not read the zone database again; nil in a value
	// decoded from JSON, and Decide loads it then.
	loc *time.Location
}

// Effective resolves a user's preferences over their tenant's defaults.
func Effective(user, tenant PreferenceSettings) EffectivePreferences {
	e := EffectivePreferences{
		GlobalSilent: resolveBool(user.GlobalSilent, tenant.GlobalSilent, false),
		Categories:   map[string]map[string]SourcedBool{},
	}
	for _, level := range []PreferenceSettings{user, tenant} {
		for name := range level.Categories {
			if _, done := e.Categories[name]; done {
				continue
			}
			switches := make(map[string]SourcedBool, len(PreferenceChannels))
			for _, ch := range PreferenceChannels {
				switches[ch] = resolveBool(lookupSwitch(user, name, ch), lookupSwitch(tenant, name, ch), true)
			}
			e.Categories[name] = switches
		}
	}
	uq, tq := user.QuietHours, tenant.QuietHours
	if uq == nil {
		uq = &QuietHoursSettings{}
	}
	if tq == nil {
		tq = &QuietHoursSettings{}
	}
	q := EffectiveQuietHours{
		Start:    resolveString(uq.Start, tq.Start, ""),
		End:      resolveString(uq.End, tq.End, ""),
		Timezone: resolveString(uq.Timezone, tq.Timezone, ""),
		Mode:     resolveString(uq.Mode, tq.Mode, QuietSuppress),
	}
	q.loc = q.location()
	q.Active = q.loc != nil
	e.QuietHours = q
	return e
}

func lookupSwitch(s PreferenceSettings, category, channel string) *bool {
	if on, ok := s.Categories[category][channel]; ok {
		return &on
	}
	return nil
}

func resolveBool(user, tenant *bool, def bool) SourcedBool {
	switch {
	case user != nil:
		return SourcedBool{*user, SourceUser}
	case tenant != nil:
		return SourcedBool{*tenant, SourceTenant}
	}
	return SourcedBool{def, SourceDefault}
}

func resolveString(user, tenant *string, def string) SourcedString {
	switch {
	case user != nil:
		return SourcedString{*user, SourceUser}
	case tenant != nil:
		return SourcedString{*tenant, SourceTenant}
	}
	return SourcedString{def, SourceDefault}
}

// window returns the quiet-hours window in minutes of the day, and whether
// there is one: both times set and valid, and different.
func (q EffectiveQuietHours) window() (start, end int, ok bool) {
	start, ok1 := parseClock(q.Start.Value)
	end, ok2 := parseClock(q.End.Value)
	return start, end, ok1 && ok2 && start != end
}

// location returns the zone of the window, or nil when there is no window
// to apply: a value is missing, or the zone no longer loads (the zone
// database changed since it was set). Without a zone nobody can say when it
// is night for the user, and delivering is what happens with no quiet
// hours.
func (q EffectiveQuietHours) location() *time.Location {
	if _, _, ok := q.window(); !ok {
		return nil
	}
	if q.loc != nil {
		return q.loc
	}
	loc, err := loadZone(q.Timezone.Value)
	if err != nil {
		return nil
	}
	return loc
}

// Switch returns the effective switch of channel (a preference channel,
// PrefApp…) in category. A category neither level names, or a channel
// preferences do not know, is on by default: preferences only ever hold
// back what someone switched off.
func (e EffectivePreferences) Switch(category, channel string) SourcedBool {
	if on, ok := e.Categories[category][channel]; ok {
		return on
	}
	return SourcedBool{true, SourceDefault}
}

// PreferenceDecision is what preferences make of one delivery.
type PreferenceDecision struct {
	Deliver bool `json:"deliver"`
	// Reason is one of the Suppressed… constants when Deliver is false.
	Reason string `json:"reason,omitempty"`
	// DeferUntil, set only for quiet hours in QuietDefer mode, is the
	// instant (in UTC) the window ends: the delivery is to be made then
	// rather than dropped.
	DeferUntil *time.Time `json:"deferUntil,omitempty"`
}

// Decide decides whether a notification of category goes out on
// deliveryChannel (ChannelInApp, ChannelPush, ChannelEmail, ChannelSMS) at
// now. In order:
//
//  1. a channel the tenant switched off stays off, critical or not: it is
//     the tenant's admin who decided that channel carries nothing;
//  2. a critical notification is delivered, bypassing the user's silence,
//     quiet hours and the user's own switches;
//  3. global silence holds it back;
//  4. a channel switched off (by the user) holds it back;
//  5. quiet hours hold back push, email and SMS, never the in-app channel
//     (the inbox and socket are read when the user chooses, so they
//     disturb nobody): suppressed, or deferred to the window's end;
//  6. otherwise it is delivered.
//
// A user who switches on what the tenant switched off overrides it, as
// every value does: step 1 applies to a switch whose effective value comes
// from the tenant. A delivery channel preferences do not know has no switch
// and is never held by quiet hours; only silence holds it back.
func (e EffectivePreferences) Decide(category, deliveryChannel string, critical bool, now time.Time) PreferenceDecision {
	channel := PreferenceChannel(deliveryChannel)
	on := e.Switch(category, channel)
	switch {
	case !on.Value && on.Source == SourceTenant:
		return PreferenceDecision{Reason: SuppressedCategoryOff}
	case critical:
		return PreferenceDecision{Deliver: true}
	case e.GlobalSilent.Value:
		return PreferenceDecision{Reason: SuppressedGlobalSilent}
	case !on.Value:
		return PreferenceDecision{Reason: SuppressedCategoryOff}
	case channel == PrefPush || channel == PrefEmail || channel == PrefSMS:
		if until, quiet := e.QuietHours.holds(now); quiet {
			d := PreferenceDecision{Reason: SuppressedQuietHours}
			if e.QuietHours.Mode.Value == QuietDefer {
				d.DeferUntil = &until
			}
			return d
		}
	}
	return PreferenceDecision{Deliver: true}
}

// holds reports whether now is inside the quiet-hours window and, if so,
// when the window ends. Membership is decided on the local wall clock, in
// minutes of the day of now in the zone, so that "22:00–07:00" means
// 22:00 to 07:00 as the user's clock shows it, on the days the clock
// changes too, whatever the UTC offset is at either end.
func (q EffectiveQuietHours) holds(now time.Time) (time.Time, bool) {
	loc := q.location()
	if loc == nil {
		return time.Time{}, false
	}
	start, end, _ := q.window()
	local := now.In(loc)
	m := local.Hour()*60 + local.Minute()
	inside := m >= start && m < end
	if start > end { // across midnight
		inside = m >= start || m < end
	}
	if !inside {
		return time.Time{}, false
	}
	y, mo, d := local.Date()
	if m >= end { // in the evening part of a window across midnight
		d++ // time.Date normalises the day after the month's last
	}
	return wallClockEnd(now, loc, y, mo, d, end).UTC(), true
}

// wallClockEnd returns the first instant after now at which the local
// clock of loc reaches minute of day y-mo-d: when a window ending then is
// over. time.Date alone does not give it on the days the clock changes:
//
//   - when the clock falls back, the time is shown twice, and time.Date
//     picks one of the two readings, not always the next one after now
//     (for Europe/Paris the second, for America/New_York the first);
//   - when the clock springs forward over it, the time is never shown, and
//     time.Date normalises it to an instant near the jump, before or after
//     it; the window is over at the jump itself, when the clock goes from
//     before the end to after it.
//
// So it considers the reading of the time in each zone period next to
// time.Date's answer (for a zone that alternates between two offsets both
// give the same reading; one that changed its standard offset need not),
// and the jump when no reading exists.
func wallClockEnd(now time.Time, loc *time.Location, y int, mo time.Month, d, minute int) time.Time {
	target := time.Date(y, mo, d, minute/60, minute%60, 0, 0, time.UTC) // the wall clock wanted
	t := time.Date(y, mo, d, minute/60, minute%60, 0, 0, loc)
	zoneStart, zoneEnd := t.ZoneBounds()
	_, offset := t.Zone()
	candidates := []time.Time{t}
	if !zoneStart.IsZero() {
		_, before := zoneStart.Add(-time.Second).Zone()
		candidates = append(candidates, t.Add(time.Duration(offset-before)*time.Second))
	}
	if !zoneEnd.IsZero() {
		_, after := zoneEnd.Zone()
		candidates = append(candidates, t.Add(time.Duration(offset-after)*time.Second))
	}
	var best time.Time
	for _, c := range candidates {
		if wallClock(c, loc).Equal(target) && c.After(now) && (best.IsZero() || c.Before(best)) {
			best = c
		}
	}
	if !best.IsZero() {
		return best
	}
	// The time does not exist that day: the window ends at the jump over
	// it, the bound of t's zone period on the side of the wanted time.
	jump := zoneEnd
	if wallClock(t, loc).After(target) {
		jump = zoneStart
	}
	if jump.IsZero() || !jump.After(now) {
		return t // not a zone with transitions; cannot happen, as t exists then
	}
	return jump
}

// wallClock is the local date and time t shows in loc, as a UTC time for
// comparing wall clocks.
func wallClock(t time.Time, loc *time.Location) time.Time {
	l := t.In(loc)
	return time.Date(l.Year(), l.Month(), l.Day(), l.Hour(), l.Minute(), l.Second(), l.Nanosecond(), time.UTC)
}

// PreferencesChanged records one level's preferences as they are from now
// on: a user's, or the tenant's defaults when UserID is empty. Settings is
// the level's complete new settings, not a difference, so folding the
// stream is taking its last event.
type PreferencesChanged struct {
	Tenant string `json:"tenant"`
	// UserID is the user whose preferences these are; empty for the
	// tenant's defaults.
	UserID    string             `json:"userId"`
	Settings  PreferenceSettings `json:"settings"`
	ChangedAt time.Time          `json:"changedAt"`
}

// EventType implements Event.
func (PreferencesChanged) EventType() string { return EventPreferencesChanged }

// EventID implements Event. A change replaces one level's settings; the
// id names the version, the level (the user, or none for the tenant's
// defaults) and the new settings, so a retried append is recognised, while
// another change decided at the same version conflicts instead of passing
// for a retry, even one giving another user the same settings.
func (e PreferencesChanged) EventID(stream string, version int64) string {
	return eventID(stream, versionedDiscriminator(EventPreferencesChanged, version)+"\x00"+e.UserID+"\x00"+e.Settings.fingerprint())
}

// fingerprint names a set of settings. encoding/json writes struct fields
// in declaration order and map keys sorted, so equal settings encode alike;
// they hold only bools, strings and maps of them, so encoding cannot fail.
func (s PreferenceSettings) fingerprint() string {
	b, _ := json.Marshal(s.Normalized()) //nolint:errchkjson // see above
	return ContentKey(b)
}

// PreferencesStream is the stream of a tenant's preferences: its defaults
// and every user's, so that one fold, kept caught up, decides the
// deliveries of a fan-out to thousands of users with one read. The id is
// derived so that no tenant name can make two streams collide.
func PreferencesStream(tenant string) string {
	return "preferences-" + uuidV5(namespace, "preferences\x00"+tenant)
}

// TenantPreferences is the write-side state of a tenant's preferences,
// folded from its stream: the defaults and each user's own settings. It is
// not safe for concurrent use.
type TenantPreferences struct {
	Defaults PreferenceSettings
	users    map[string]PreferenceSettings
	Version  int64 // of the last applied event; -1 when none
}

// NewTenantPreferences returns the state of a tenant where no one set
// preferences: everything inherits.
func NewTenantPreferences() *TenantPreferences {
	return &TenantPreferences{Version: -1, users: map[string]PreferenceSettings{}}
}

// Apply folds one event of the preferences stream.
func (p *TenantPreferences) Apply(event Event, version int64) {
	if e, ok := event.(PreferencesChanged); ok {
		if e.UserID == "" {
			p.Defaults = e.Settings
		} else {
			p.users[e.UserID] = e.Settings
		}
	}
	p.Version = version
}

// Of returns a user's own settings; the tenant's defaults for user "".
func (p *TenantPreferences) Of(user string) PreferenceSettings {
	if user == "" {
		return p.Defaults
	}
	return p.users[user]
}

// EffectiveFor returns what is in effect for user: the user's settings over
// the tenant's defaults.
func (p *TenantPreferences) EffectiveFor(user string) EffectivePreferences {
	return Effective(p.users[user], p.Defaults)
}
