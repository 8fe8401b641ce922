package vbmc

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"time"
)

// Redfish sessions as DSP0266 §13.3 has them: POST UserName and Password to
// the Sessions collection, get an X-Auth-Token and the session's URI in
// Location, send the token on every request, DELETE the URI to log out. A
// session ends after SessionTimeout seconds without a request, and a BMC
// holds only a few: when all are taken, a new login is refused until one is
// deleted or expires. That is what real BMCs do, and why a client must log
// out and must log in again when its token stops working.

// DefaultSessionTimeout is the idle time after which a Redfish session
// ends (SessionService.SessionTimeout; 30 min is what most BMCs ship with).
const DefaultSessionTimeout = 30 * time.Minute

// DefaultMaxSessions is how many Redfish sessions the vBMC holds at once.
const DefaultMaxSessions = 16

var errSessionLimit = errors.New("all Redfish sessions of this BMC are in use")

// rfSession is one logged-in client.
type rfSession struct {
	id, token, user string
	created         time.Time
	lastUsed        time.Time
}

// sessionStore keeps the sessions; time is passed in (now) so expiry is
// tested without waiting.
type sessionStore struct {
	mu      sync.Mutex
	byToken map[string]*rfSession
	timeout time.Duration
	max     int
	now     func() time.Time
}

func newSessionStore(timeout time.Duration, max int, now func() time.Time) *sessionStore {
	return &sessionStore{byToken: map[string]*rfSession{}, timeout: timeout, max: max, now: now}
}

// purgeLocked drops sessions idle for longer than the timeout.
func (s *sessionStore) purgeLocked(now time.Time) {
	for tok, se := range s.byToken {
		if now.Sub(se.lastUsed) >= s.timeout {
			delete(s.byToken, tok)
		}
	}
}

// create opens a session for user (already authenticated).
func (s *sessionStore) create(user string) (*rfSession, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.purgeLocked(now)
	if len(s.byToken) >= s.max {
		return nil, errSessionLimit
	}
	se := &rfSession{id: randomHex(8), token: randomToken(), user: user, created: now, lastUsed: now}
	s.byToken[se.token] = se
	return se, nil
}

// use finds the session of a token and marks it used; an expired or
// unknown token finds nothing. Tokens are compared in constant time.
func (s *sessionStore) use(token string) (*rfSession, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.purgeLocked(now)
	for tok, se := range s.byToken {
		if subtle.ConstantTimeCompare([]byte(tok), []byte(token)) == 1 {
			se.lastUsed = now
			return se, true
		}
	}
	return nil, false
}

// get returns the session with id, if it is alive.
func (s *sessionStore) get(id string) (rfSession, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.purgeLocked(s.now())
	for _, se := range s.byToken {
		if se.id == id {
			return *se, true
		}
	}
	return rfSession{}, false
}

// remove ends the session with id; false when there was none.
func (s *sessionStore) remove(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for tok, se := range s.byToken {
		if se.id == id {
			delete(s.byToken, tok)
			return true
		}
	}
	return false
}

// ids lists the live sessions, oldest first.
func (s *sessionStore) ids() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.purgeLocked(s.now())
	all := make([]*rfSession, 0, len(s.byToken))
	for _, se := range s.byToken {
		all = append(all, se)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].created.Before(all[j].created) })
	ids := make([]string, len(all))
	for i, se := range all {
		ids[i] = se.id
	}
	return ids
}

// credentialsMatch compares in constant time, so timing tells an attacker
// nothing about the password.
func credentialsMatch(user, password, wantUser, wantPassword string) bool {
	u := subtle.ConstantTimeCompare([]byte(user), []byte(wantUser))
	p := subtle.ConstantTimeCompare([]byte(password), []byte(wantPassword))
	return u&p == 1
}

// authenticate accepts a live session token (X-Auth-Token) or HTTP Basic
// credentials, the two schemes DSP0266 requires a service to support.
func (s *redfishServer) authenticate(r *http.Request) bool {
	if tok := r.Header.Get("X-Auth-Token"); tok != "" {
		_, ok := s.sessions.use(tok)
		return ok
	}
	if u, p, ok := r.BasicAuth(); ok {
		return credentialsMatch(u, p, s.user, s.password)
	}
	return false
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return hex.EncodeToString(b)
}

func randomToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func (s *redfishServer) getSessionService(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"@odata.id":      rfSessionService,
		"@odata.type":    "#SessionService.v1_1_8.SessionService",
		"Id":             "SessionService",
		"Name":           "Session Service",
		"ServiceEnabled": true,
		"SessionTimeout": int(s.sessions.timeout / time.Second),
		"Sessions":       link(rfSessions),
	})
}

// login is POST to the Sessions collection: the one write that needs no
// authentication, since it is the authentication.
func (s *redfishServer) login(w http.ResponseWriter, r *http.Request) {
	if !isJSON(w, r) {
		return
	}
	var req struct{ UserName, Password string }
	if !decode(w, r, &req) {
		return
	}
	if !credentialsMatch(req.UserName, req.Password, s.user, s.password) {
		s.log.Warn("Redfish login refused", "remote", r.RemoteAddr)
		writeError(w, http.StatusUnauthorized, "InvalidCredentials", "The credentials provided were not accepted.")
		return
	}
	se, err := s.sessions.create(req.UserName)
	if errors.Is(err, errSessionLimit) {
		writeError(w, http.StatusServiceUnavailable, "SessionLimitExceeded", "The session establishment failed due to the number of simultaneous sessions exceeding the limit of the implementation.")
		return
	}
	if err != nil {
		s.internal(w, "creating a session", err)
		return
	}
	w.Header().Set("X-Auth-Token", se.token)
	w.Header().Set("Location", rfSessions+"/"+se.id)
	writeJSON(w, http.StatusCreated, sessionJSON(*se))
}

func sessionJSON(se rfSession) map[string]any {
	return map[string]any{
		"@odata.id": rfSessions + "/" + se.id, "@odata.type": "#Session.v1_3_0.Session",
		"Id": se.id, "Name": "User Session", "UserName": se.user,
	}
}

func (s *redfishServer) listSessions(w http.ResponseWriter, _ *http.Request) {
	ids := s.sessions.ids()
	members := make([]odataID, len(ids))
	for i, id := range ids {
		members[i] = link(rfSessions + "/" + id)
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"@odata.id": rfSessions, "@odata.type": "#SessionCollection.SessionCollection",
		"Name": "Session Collection", "Members": members, "Members@odata.count": len(members),
	})
}

func (s *redfishServer) getSession(w http.ResponseWriter, r *http.Request) {
	se, ok := s.sessions.get(r.PathValue("id"))
	if !ok {
		writeError(w, http.StatusNotFound, "ResourceMissingAtURI", fmt.Sprintf("The resource at the URI %s was not found.", r.URL.Path))
		return
	}
	writeJSON(w, http.StatusOK, sessionJSON(se))
}

func (s *redfishServer) deleteSession(w http.ResponseWriter, r *http.Request) {
	if !s.sessions.remove(r.PathValue("id")) {
		writeError(w, http.StatusNotFound, "ResourceMissingAtURI", fmt.Sprintf("The resource at the URI %s was not found.", r.URL.Path))
		return
	}
	w.Header().Set("OData-Version", "4.0")
	w.WriteHeader(http.StatusNoContent)
}
