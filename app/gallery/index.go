package gallery

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
	"unicode"

	_ "modernc.org/sqlite" // registers the "sqlite" driver (pure Go, FTS5 built in)
)

// schemaVersion is stored in PRAGMA user_version; an index of another
// version is thrown away and rebuilt, being a cache.
const schemaVersion = 3

const schema = `
CREATE TABLE items(
	n          INTEGER PRIMARY KEY,
	id         TEXT NOT NULL UNIQUE,
	size       INTEGER NOT NULL,
	mtime      INTEGER NOT NULL,
	source     TEXT NOT NULL,
	prompt     TEXT NOT NULL,
	negative   TEXT NOT NULL,
	model      TEXT NOT NULL,
	model_hash TEXT NOT NULL,
	seed       INTEGER,
	steps      INTEGER NOT NULL,
	cfg        REAL NOT NULL,
	sampler    TEXT NOT NULL,
	scheduler  TEXT NOT NULL,
	width      INTEGER NOT NULL,
	height     INTEGER NOT NULL,
	clip_skip  INTEGER NOT NULL,
	rng        TEXT NOT NULL,
	loras      TEXT NOT NULL,
	ref_sha256 TEXT NOT NULL,
	ref_scale  REAL NOT NULL,
	ip_adapter TEXT NOT NULL
);
-- Searches walk this index in time order, filter on the columns it holds
-- without reading the rows, and stop after a page: see Search.
CREATE INDEX items_scan ON items(mtime, id, model COLLATE NOCASE, width, height, seed, source);
-- The full-text index of the prompts, its content read from items. It is
-- kept in step by changeRows rather than by triggers: FTS5 flushes its
-- pending entries at every statement that writes it, so one statement per
-- batch is far cheaper than one per row.
CREATE VIRTUAL TABLE items_fts USING fts5(prompt, content='items', content_rowid='n', tokenize='unicode61 remove_diacritics 2');
CREATE TABLE problems(
	id      TEXT PRIMARY KEY,
	size    INTEGER NOT NULL,
	mtime   INTEGER NOT NULL,
	error   TEXT NOT NULL,
	indexed INTEGER NOT NULL
);
`

const itemColumns = `id, size, mtime, source, prompt, negative, model, model_hash, seed, steps, cfg,
	sampler, scheduler, width, height, clip_skip, rng, loras, ref_sha256, ref_scale, ip_adapter`

// openIndex opens (or creates) the index database, discarding one that is
// unreadable or of another schema version.
func openIndex(file string) (*sql.DB, error) {
	db, err := tryOpenIndex(file)
	if err == nil {
		return db, nil
	}
	// A cache may always be rebuilt: remove it and start again.
	for _, suffix := range []string{"", "-wal", "-shm", "-journal"} {
		if rmErr := os.Remove(file + suffix); rmErr != nil && !errors.Is(rmErr, os.ErrNotExist) {
			return nil, fmt.Errorf("gallery: index %s unusable (%v) and cannot be removed: %w", file, err, rmErr)
		}
	}
	db, err2 := tryOpenIndex(file)
	if err2 != nil {
		return nil, fmt.Errorf("gallery: open index %s: %w", file, err2)
	}
	return db, nil
}

func dsn(file string) string {
	p := filepath.ToSlash(file)
	if runtime.GOOS == "windows" {
		p = "/" + p
	}
	u := url.URL{Scheme: "file", Path: p}
	// WAL lets searches run while a Sync writes; NORMAL synchronous is safe
	// with WAL and the index is a cache anyway.
	return u.String() + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)"
}

func tryOpenIndex(file string) (*sql.DB, error) {
	db, err := sql.Open("sqlite", dsn(file))
	if err != nil {
		return nil, err
	}
	ctx := context.Background()
	var version int
	if err := db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		db.Close()
		return nil, err
	}
	switch version {
	case schemaVersion:
		// Touch every table: a damaged file fails here rather than later.
		var n int
		err := db.QueryRowContext(ctx, "SELECT (SELECT count(*) FROM items) + (SELECT count(*) FROM problems) + (SELECT count(*) FROM items_fts WHERE items_fts MATCH 'x')").Scan(&n)
		if err != nil {
			db.Close()
			return nil, err
		}
		return db, nil
	case 0:
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			db.Close()
			return nil, err
		}
		defer tx.Rollback()
		var tables int
		if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema").Scan(&tables); err != nil {
			db.Close()
			return nil, err
		}
		if tables != 0 {
			db.Close()
			return nil, errors.New("database of an unknown layout")
		}
		if _, err := tx.ExecContext(ctx, schema); err != nil {
			db.Close()
			return nil, fmt.Errorf("create schema (is FTS5 available?): %w", err)
		}
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", schemaVersion)); err != nil {
			db.Close()
			return nil, err
		}
		if err := tx.Commit(); err != nil {
			db.Close()
			return nil, err
		}
		return db, nil
	default:
		db.Close()
		return nil, fmt.Errorf("index schema version %d, want %d", version, schemaVersion)
	}
}

// execer is what writing an item needs: a *sql.DB or a *sql.Tx.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// stmtCache is an execer over a transaction that prepares each statement
// once: a Sync batch runs the same few statements hundreds of times.
type stmtCache struct {
	tx    *sql.Tx
	stmts map[string]*sql.Stmt
}

func newStmtCache(tx *sql.Tx) *stmtCache { return &stmtCache{tx: tx, stmts: map[string]*sql.Stmt{}} }

func (c *stmtCache) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	st, ok := c.stmts[query]
	if !ok {
		var err error
		if st, err = c.tx.PrepareContext(ctx, query); err != nil {
			return nil, err
		}
		c.stmts[query] = st
	}
	return st.ExecContext(ctx, args...)
}

func (c *stmtCache) close() {
	for _, st := range c.stmts {
		st.Close()
	}
}

// Statements that take the given IDs' prompts out of, and put them into,
// the full-text index.
const (
	ftsDeleteSQL = `INSERT INTO items_fts(items_fts, rowid, prompt)
		SELECT 'delete', n, prompt FROM items WHERE id IN (SELECT value FROM json_each(?))`
	ftsInsertSQL = `INSERT INTO items_fts(rowid, prompt)
		SELECT n, prompt FROM items WHERE id IN (SELECT value FROM json_each(?))`
)

// changeRows runs fn, which may add, change or drop the items rows of ids
// (putItem, dropEntry), in one transaction that keeps the full-text index
// in step: the old prompts leave it before fn, the new ones enter after.
func (s *Store) changeRows(ctx context.Context, ids []string, fn func(ex execer) error) error {
	if len(ids) == 0 {
		return nil
	}
	js, err := json.Marshal(ids)
	if err != nil {
		return err
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("index: %w", err)
	}
	defer tx.Rollback()
	ex := newStmtCache(tx)
	defer ex.close()
	if _, err := ex.ExecContext(ctx, ftsDeleteSQL, string(js)); err != nil {
		return fmt.Errorf("index: full-text removal: %w", err)
	}
	if err := fn(ex); err != nil {
		return err
	}
	if _, err := ex.ExecContext(ctx, ftsInsertSQL, string(js)); err != nil {
		return fmt.Errorf("index: full-text insertion: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("index: %w", err)
	}
	return nil
}

// putItem writes an item's row (and its problem note); call it within
// changeRows.
func putItem(ctx context.Context, db execer, it *Item, notes []string) error {
	loras, err := json.Marshal(it.LoRAs)
	if err != nil {
		return err
	}
	if it.LoRAs == nil {
		loras = []byte("[]")
	}
	var seed any
	if it.HasSeed {
		seed = it.Seed
	}
	_, err = db.ExecContext(ctx, `INSERT INTO items(`+itemColumns+`)
		VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
		ON CONFLICT(id) DO UPDATE SET size=excluded.size, mtime=excluded.mtime, source=excluded.source,
			prompt=excluded.prompt, negative=excluded.negative, model=excluded.model, model_hash=excluded.model_hash,
			seed=excluded.seed, steps=excluded.steps, cfg=excluded.cfg, sampler=excluded.sampler,
			scheduler=excluded.scheduler, width=excluded.width, height=excluded.height, clip_skip=excluded.clip_skip,
			rng=excluded.rng, loras=excluded.loras, ref_sha256=excluded.ref_sha256, ref_scale=excluded.ref_scale,
			ip_adapter=excluded.ip_adapter`,
		it.ID, it.Size, mtimeNanos(it.ModTime), string(it.Source), it.Prompt, it.Negative, it.Model, it.ModelHash,
		seed, it.Steps, it.CFG, it.Sampler, it.Scheduler, it.Width, it.Height, it.ClipSkip, it.RNG,
		string(loras), it.RefSHA256, it.RefScale, it.IPAdapter)
	if err != nil {
		return fmt.Errorf("index %s: %w", it.ID, err)
	}
	if len(notes) > 0 {
		return putProblem(ctx, db, it.ID, it.Size, mtimeNanos(it.ModTime), strings.Join(notes, "; "), true)
	}
	_, err = db.ExecContext(ctx, "DELETE FROM problems WHERE id = ?", it.ID)
	return err
}

func putProblem(ctx context.Context, db execer, id string, size, mtime int64, msg string, indexed bool) error {
	_, err := db.ExecContext(ctx, `INSERT INTO problems(id, size, mtime, error, indexed) VALUES (?,?,?,?,?)
		ON CONFLICT(id) DO UPDATE SET size=excluded.size, mtime=excluded.mtime, error=excluded.error, indexed=excluded.indexed`,
		id, size, mtime, msg, indexed)
	if err != nil {
		return fmt.Errorf("record problem with %s: %w", id, err)
	}
	return nil
}

// dropEntry removes an ID from the index and the problem list; call it
// within changeRows.
func dropEntry(ctx context.Context, db execer, id string) error {
	if _, err := db.ExecContext(ctx, "DELETE FROM items WHERE id = ?", id); err != nil {
		return fmt.Errorf("unindex %s: %w", id, err)
	}
	if _, err := db.ExecContext(ctx, "DELETE FROM problems WHERE id = ?", id); err != nil {
		return fmt.Errorf("unindex %s: %w", id, err)
	}
	return nil
}

type rowScanner interface{ Scan(dest ...any) error }

func (s *Store) scanItem(r rowScanner) (Item, error) {
	var (
		it           Item
		mtime        int64
		source       string
		seed         sql.NullInt64
		loras        string
		prompt, negv string
	)
	err := r.Scan(&it.ID, &it.Size, &mtime, &source, &prompt, &negv, &it.Model, &it.ModelHash, &seed,
		&it.Steps, &it.CFG, &it.Sampler, &it.Scheduler, &it.Width, &it.Height, &it.ClipSkip, &it.RNG,
		&loras, &it.RefSHA256, &it.RefScale, &it.IPAdapter)
	if err != nil {
		return Item{}, err
	}
	it.Prompt, it.Negative = prompt, negv
	it.Source = Source(source)
	it.ModTime = time.Unix(0, mtime)
	it.Seed, it.HasSeed = seed.Int64, seed.Valid
	if loras != "" && loras != "[]" {
		if err := json.Unmarshal([]byte(loras), &it.LoRAs); err != nil {
			return Item{}, fmt.Errorf("index entry %s: loras: %w", it.ID, err)
		}
	}
	it.Path = filepath.Join(s.dir, filepath.FromSlash(it.ID))
	return it, nil
}

// Get returns the indexed image with the given ID.
func (s *Store) Get(ctx context.Context, id string) (Item, error) {
	if err := s.check(ctx); err != nil {
		return Item{}, err
	}
	row := s.db.QueryRowContext(ctx, "SELECT "+itemColumns+" FROM items WHERE id = ?", id)
	it, err := s.scanItem(row)
	if errors.Is(err, sql.ErrNoRows) {
		return Item{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return Item{}, fmt.Errorf("gallery: get %s: %w", id, err)
	}
	return it, nil
}

// Problems lists the files that could not be indexed, or were indexed with
// metadata that was not understood, as of the last Sync.
func (s *Store) Problems(ctx context.Context) ([]Problem, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, "SELECT id, error, indexed FROM problems ORDER BY id")
	if err != nil {
		return nil, fmt.Errorf("gallery: list problems: %w", err)
	}
	defer rows.Close()
	var out []Problem
	for rows.Next() {
		var p Problem
		if err := rows.Scan(&p.ID, &p.Err, &p.Indexed); err != nil {
			return nil, fmt.Errorf("gallery: list problems: %w", err)
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// Order is how Search sorts its results.
type Order int

// Orders.
const (
	// Newest first, by file modification time (the default).
	Newest Order = iota
	// Oldest first.
	Oldest
	// Relevance ranks full-text matches by BM25, best first; without Text
	// it is Newest.
	Relevance
)

// Query selects images. Zero fields do not filter.
type Query struct {
	// Text is searched in the prompts (not the negative prompts): every
	// word must appear, as a word or the start of one ("hai" finds hair);
	// words joined by underscores or hyphens, or in double quotes, must
	// appear together in that order ("long_hair", "\"blue eyes\""); a word
	// starting with '-' must not appear. Case and accents are ignored.
	Text string
	// Model matches the model name exactly, ignoring case.
	Model string
	// From and To bound the file modification time, both inclusive.
	From, To time.Time
	// Width and Height match the pixel size.
	Width, Height int
	// Seed, when set, matches the seed.
	Seed *int64
	// Source, when set, matches the metadata's source.
	Source Source
	// Limit bounds the number of results (0: no bound); Offset skips that
	// many first, for paging.
	Limit, Offset int
	Order         Order
}

// ftsQuery turns Query.Text into an FTS5 expression of positive terms and
// one of negative terms ("" when none). Only letters and digits reach the
// expression, always inside double quotes, so user text cannot inject FTS5
// syntax.
func ftsQuery(text string) (pos, neg string) {
	var posTerms, negTerms []string
	for _, tok := range splitQueryTokens(text) {
		negate := false
		if strings.HasPrefix(tok.text, "-") && !tok.quoted {
			negate = true
			tok.text = tok.text[1:]
		}
		words := strings.FieldsFunc(tok.text, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsNumber(r) })
		if len(words) == 0 {
			continue
		}
		term := `"` + strings.Join(words, " ") + `"`
		if !tok.quoted {
			// The last word may be incomplete: the user is still typing it.
			term += "*"
		}
		if negate {
			negTerms = append(negTerms, term)
		} else {
			posTerms = append(posTerms, term)
		}
	}
	return strings.Join(posTerms, " AND "), strings.Join(negTerms, " OR ")
}

type queryToken struct {
	text   string
	quoted bool
}

func splitQueryTokens(s string) []queryToken {
	var out []queryToken
	for {
		s = strings.TrimLeftFunc(s, func(r rune) bool { return unicode.IsSpace(r) || r == ',' })
		if s == "" {
			return out
		}
		if s[0] == '"' {
			end := strings.IndexByte(s[1:], '"')
			if end < 0 {
				out = append(out, queryToken{s[1:], true})
				return out
			}
			out = append(out, queryToken{s[1 : 1+end], true})
			s = s[end+2:]
			continue
		}
		end := strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || r == ',' })
		if end < 0 {
			end = len(s)
		}
		out = append(out, queryToken{s[:end], false})
		s = s[end:]
	}
}

// where builds the FROM and WHERE clauses and arguments of q. With rank
// set, the full-text table is joined so that bm25() can order the rows;
// otherwise full-text matches are a set the rows are tested against, which
// lets SQLite walk the time index and stop after a page of results instead
// of sorting every match.
func (q *Query) where(rank bool) (clause string, args []any, joined bool) {
	var conds []string
	pos, neg := ftsQuery(q.Text)
	if pos != "" {
		expr := pos
		if neg != "" {
			expr = "(" + pos + ") NOT (" + neg + ")"
		}
		if rank {
			joined = true
			conds = append(conds, "items_fts MATCH ?")
		} else {
			conds = append(conds, "items.n IN (SELECT rowid FROM items_fts WHERE items_fts MATCH ?)")
		}
		args = append(args, expr)
	} else if neg != "" {
		conds = append(conds, "items.n NOT IN (SELECT rowid FROM items_fts WHERE items_fts MATCH ?)")
		args = append(args, neg)
	}
	if q.Model != "" {
		conds = append(conds, "items.model = ? COLLATE NOCASE")
		args = append(args, q.Model)
	}
	if !q.From.IsZero() {
		conds = append(conds, "items.mtime >= ?")
		args = append(args, mtimeNanos(q.From))
	}
	if !q.To.IsZero() {
		conds = append(conds, "items.mtime <= ?")
		args = append(args, mtimeNanos(q.To))
	}
	if q.Width > 0 {
		conds = append(conds, "items.width = ?")
		args = append(args, q.Width)
	}
	if q.Height > 0 {
		conds = append(conds, "items.height = ?")
		args = append(args, q.Height)
	}
	if q.Seed != nil {
		conds = append(conds, "items.seed = ?")
		args = append(args, *q.Seed)
	}
	if q.Source != "" {
		conds = append(conds, "items.source = ?")
		args = append(args, string(q.Source))
	}
	from := "items"
	if joined {
		from = "items JOIN items_fts ON items_fts.rowid = items.n"
	}
	clause = " FROM " + from
	if len(conds) > 0 {
		clause += " WHERE " + strings.Join(conds, " AND ")
	}
	return clause, args, joined
}

// Search returns the images matching q.
//
// Unless ranked by relevance, the page of results is picked from the
// items_scan index alone (full-text matches are a set looked up per index
// entry): SQLite walks it in time order and stops after Offset+Limit hits,
// so a common word costs a page, not a sort of every match, and a rare one
// a walk of the narrow index. Then only that page's rows are read.
func (s *Store) Search(ctx context.Context, q Query) ([]Item, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	cols := "items." + strings.ReplaceAll(strings.Join(strings.Fields(itemColumns), " "), ", ", ", items.")
	limit := q.Limit
	if limit <= 0 {
		limit = -1 // SQLite: no limit
	}
	offset := max(q.Offset, 0)
	var query string
	var args []any
	if q.Order == Relevance {
		var clause string
		var joined bool
		clause, args, joined = q.where(true)
		if joined {
			// Rank and page on narrow rows, then read the page's items.
			query = "SELECT " + cols + " FROM (SELECT items.n AS pn, bm25(items_fts) AS score, items.mtime AS pt, items.id AS pid" +
				clause + " ORDER BY score, pt DESC, pid DESC LIMIT ? OFFSET ?) AS page JOIN items ON items.n = page.pn" +
				" ORDER BY page.score, page.pt DESC, page.pid DESC"
		}
	}
	if query == "" {
		dir := "DESC"
		if q.Order == Oldest {
			dir = "ASC"
		}
		order := " ORDER BY items.mtime " + dir + ", items.id " + dir
		var clause string
		clause, args, _ = q.where(false)
		clause = strings.Replace(clause, " FROM items", " FROM items INDEXED BY items_scan", 1)
		query = "SELECT " + cols + " FROM items WHERE items.n IN (SELECT items.n" + clause + order + " LIMIT ? OFFSET ?)" + order
	}
	args = append(args, limit, offset)
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("gallery: search %q: %w", q.Text, err)
	}
	defer rows.Close()
	var out []Item
	for rows.Next() {
		it, err := s.scanItem(rows)
		if err != nil {
			return nil, fmt.Errorf("gallery: search: %w", err)
		}
		out = append(out, it)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("gallery: search %q: %w", q.Text, err)
	}
	return out, nil
}

// Count returns how many images match q (ignoring its Limit and Offset),
// for sizing a virtualised grid.
func (s *Store) Count(ctx context.Context, q Query) (int, error) {
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	clause, args, _ := q.where(false)
	clause = strings.Replace(clause, " FROM items", " FROM items INDEXED BY items_scan", 1)
	var n int
	if err := s.db.QueryRowContext(ctx, "SELECT count(*)"+clause, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("gallery: count %q: %w", q.Text, err)
	}
	return n, nil
}

// Facets are the distinct models and pixel sizes of the indexed images, for
// a UI's filter choices.
type Facets struct {
	// Models are the model names, sorted.
	Models []string
	// Sizes are the [width, height] pairs, sorted by width then height.
	Sizes [][2]int
}

// Facets lists the models and sizes present in the index, with two
// DISTINCT queries rather than reading every row.
func (s *Store) Facets(ctx context.Context) (Facets, error) {
	var f Facets
	if err := s.check(ctx); err != nil {
		return f, err
	}
	rows, err := s.db.QueryContext(ctx, `SELECT DISTINCT model FROM items WHERE model != '' ORDER BY model`)
	if err != nil {
		return f, fmt.Errorf("gallery: list models: %w", err)
	}
	for rows.Next() {
		var m string
		if err := rows.Scan(&m); err != nil {
			rows.Close()
			return f, fmt.Errorf("gallery: list models: %w", err)
		}
		f.Models = append(f.Models, m)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return f, fmt.Errorf("gallery: list models: %w", err)
	}
	rows, err = s.db.QueryContext(ctx, `SELECT DISTINCT width, height FROM items WHERE width > 0 AND height > 0 ORDER BY width, height`)
	if err != nil {
		return f, fmt.Errorf("gallery: list sizes: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var wh [2]int
		if err := rows.Scan(&wh[0], &wh[1]); err != nil {
			return f, fmt.Errorf("gallery: list sizes: %w", err)
		}
		f.Sizes = append(f.Sizes, wh)
	}
	if err := rows.Err(); err != nil {
		return f, fmt.Errorf("gallery: list sizes: %w", err)
	}
	return f, nil
}
