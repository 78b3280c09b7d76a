"""Named schema migrations, applied in order when a store opens.

Each migration is a name and the statements it runs; the names already applied are kept in
``schema_migrations``. A migration never changes once released: a later schema change is a new
migration appended to :data:`MIGRATIONS`. The SQL is the subset SQLite and PostgreSQL share
(``TEXT``, ``BIGINT``, ``DOUBLE PRECISION``, ``BOOLEAN``), so both backends run the same text.

A database that has applied a migration this version does not know was written by a newer Helio;
opening it is refused rather than guessed at.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Connection, text

from helio_proxy.store.base import StoreError


@dataclass(frozen=True, slots=True)
class Migration:
    """One named, ordered schema change."""

    name: str
    statements: Sequence[str]
    dialects: Mapping[str, Sequence[str]] = field(default_factory=dict[str, Sequence[str]])
    """Statements run after ``statements`` on one backend only (keyed by dialect name): search
    indexes whose SQL the backends do not share (SQLite FTS5, PostgreSQL GIN)."""


AUDIT_SCHEMA = Migration(
    "0001_audit_records",
    (
        """CREATE TABLE audit_records (
            seq BIGINT PRIMARY KEY,
            id TEXT NOT NULL,
            timestamp TEXT NOT NULL,
            session_id TEXT,
            agent_id TEXT,
            tool_name TEXT,
            tool_input TEXT,
            policy_decision TEXT,
            block_reason TEXT,
            matched_rule TEXT,
            evidence_chain TEXT,
            approval_status TEXT,
            approved_by TEXT,
            upstream_response TEXT,
            upstream_error TEXT,
            upstream_http_status INTEGER,
            upstream_latency_ms DOUBLE PRECISION,
            total_duration_ms DOUBLE PRECISION,
            approval_wait_ms DOUBLE PRECISION,
            proxy_compute_ms DOUBLE PRECISION,
            flagged_destructive BOOLEAN NOT NULL DEFAULT FALSE,
            dry_run BOOLEAN NOT NULL DEFAULT FALSE,
            created_at TEXT NOT NULL,
            environment TEXT,
            matched_rule_index INTEGER,
            record_kind TEXT NOT NULL,
            origin TEXT NOT NULL,
            metadata TEXT,
            session_source TEXT,
            protocol_version TEXT,
            config_sha256 TEXT,
            success BOOLEAN,
            prev_hash TEXT,
            hash TEXT,
            signature TEXT
        )""",
        "CREATE UNIQUE INDEX audit_records_id ON audit_records (id)",
        "CREATE INDEX audit_records_timestamp ON audit_records (timestamp)",
        "CREATE INDEX audit_records_tool_name ON audit_records (tool_name)",
        "CREATE INDEX audit_records_policy_decision ON audit_records (policy_decision)",
        "CREATE INDEX audit_records_session_id ON audit_records (session_id)",
        "CREATE INDEX audit_records_block_reason ON audit_records (block_reason)",
        "CREATE INDEX audit_records_record_kind ON audit_records (record_kind)",
        "CREATE INDEX audit_records_origin ON audit_records (origin)",
        "CREATE INDEX audit_records_status_time ON audit_records (upstream_http_status, timestamp)",
        """CREATE TABLE audit_chain (
            id INTEGER PRIMARY KEY,
            seq BIGINT NOT NULL,
            head_hash TEXT NOT NULL,
            anchor_seq BIGINT NOT NULL,
            anchor_hash TEXT NOT NULL
        )""",
        "INSERT INTO audit_chain (id, seq, head_hash, anchor_seq, anchor_hash) VALUES "
        "(1, 0, '0000000000000000000000000000000000000000000000000000000000000000', "
        "0, '0000000000000000000000000000000000000000000000000000000000000000')",
    ),
)

GOVERNANCE_SCHEMA = Migration(
    "0002_governance_state",
    (
        """CREATE TABLE approval_tickets (
            id TEXT PRIMARY KEY,
            status TEXT NOT NULL,
            created_at TEXT NOT NULL,
            expires_at TEXT NOT NULL,
            resolved_at TEXT,
            session_id TEXT,
            agent_id TEXT,
            tool_name TEXT NOT NULL,
            arguments_digest TEXT NOT NULL,
            config_sha256 TEXT,
            request TEXT NOT NULL,
            decisions TEXT NOT NULL,
            resolution_reason TEXT
        )""",
        "CREATE INDEX approval_tickets_status ON approval_tickets (status, expires_at)",
        """CREATE TABLE budget_meta (
            name TEXT PRIMARY KEY,
            epoch INTEGER NOT NULL,
            fingerprint TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            retired_at TEXT
        )""",
        """CREATE TABLE budget_events (
            id TEXT PRIMARY KEY,
            budget_name TEXT NOT NULL,
            epoch INTEGER NOT NULL,
            bucket_key TEXT NOT NULL,
            amount TEXT NOT NULL,
            currency TEXT NOT NULL,
            occurred_at TEXT NOT NULL,
            audit_id TEXT
        )""",
        "CREATE INDEX budget_events_bucket ON budget_events (budget_name, epoch, bucket_key, occurred_at)",
        "CREATE INDEX budget_events_occurred_at ON budget_events (occurred_at)",
        """CREATE TABLE limit_events (
            id TEXT PRIMARY KEY,
            bucket_key TEXT NOT NULL,
            amount TEXT NOT NULL,
            occurred_at TEXT NOT NULL,
            audit_id TEXT
        )""",
        "CREATE INDEX limit_events_bucket ON limit_events (bucket_key, occurred_at)",
        "CREATE INDEX limit_events_occurred_at ON limit_events (occurred_at)",
        """CREATE TABLE session_evidence (
            session_id TEXT NOT NULL,
            tool_name TEXT NOT NULL,
            evidence_key TEXT NOT NULL,
            evidence_data TEXT,
            source TEXT NOT NULL,
            created_at TEXT NOT NULL,
            expires_at TEXT,
            audit_id TEXT,
            PRIMARY KEY (session_id, tool_name, evidence_key)
        )""",
        """CREATE TABLE session_calls (
            audit_id TEXT PRIMARY KEY,
            session_id TEXT NOT NULL,
            tool_name TEXT NOT NULL,
            succeeded BOOLEAN NOT NULL,
            completed_at TEXT NOT NULL
        )""",
        "CREATE INDEX session_calls_session ON session_calls (session_id, tool_name)",
        """CREATE TABLE session_dependencies (
            session_id TEXT NOT NULL,
            tool_name TEXT NOT NULL,
            requires TEXT NOT NULL,
            declared_at TEXT NOT NULL,
            PRIMARY KEY (session_id, tool_name)
        )""",
        """CREATE TABLE tool_baselines (
            upstream TEXT NOT NULL,
            tool_name TEXT NOT NULL,
            definition_sha256 TEXT NOT NULL,
            definition TEXT NOT NULL,
            first_seen_at TEXT NOT NULL,
            accepted_at TEXT,
            accepted_by TEXT,
            PRIMARY KEY (upstream, tool_name)
        )""",
    ),
)

TOOL_BASELINE_PENDING = Migration(
    "0003_tool_baseline_pending",
    (
        # The definition a tool drifted to, so it is visible outside the proxy (``helio tools``)
        # and survives a restart; NULL while the tool matches its baseline.
        "ALTER TABLE tool_baselines ADD COLUMN pending_definition TEXT",
        "ALTER TABLE tool_baselines ADD COLUMN pending_sha256 TEXT",
        "ALTER TABLE tool_baselines ADD COLUMN pending_aspects TEXT",
        "ALTER TABLE tool_baselines ADD COLUMN pending_since TEXT",
    ),
)

LIMIT_BUCKETS = Migration(
    "0004_limit_buckets",
    (
        # One row per limit or budget bucket: the row charges lock (SELECT ... FOR UPDATE), so
        # replicas on one PostgreSQL take turns on a bucket; it also dates a session pot.
        """CREATE TABLE limit_buckets (
            bucket_key TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            owner TEXT NOT NULL,
            version TEXT NOT NULL,
            scope TEXT NOT NULL,
            subject TEXT,
            started_at TEXT NOT NULL,
            last_activity TEXT NOT NULL
        )""",
        "CREATE INDEX limit_buckets_owner ON limit_buckets (kind, owner, version)",
        "CREATE INDEX limit_buckets_last_activity ON limit_buckets (last_activity)",
        # What the budget ledger says about each charge besides its amount.
        "ALTER TABLE budget_events ADD COLUMN tool_name TEXT",
        "ALTER TABLE budget_events ADD COLUMN session_id TEXT",
    ),
)

APPROVAL_TICKET_STATE = Migration(
    "0005_approval_ticket_state",
    (
        # What approvals track beyond the ticket's request and decisions: who holds the call
        # (a proxy instance, with a heartbeat, so another proxy can tell a held ticket from one
        # whose proxy died), escalation, channel deliveries and failures, and consumption.
        "ALTER TABLE approval_tickets ADD COLUMN kind TEXT",
        "ALTER TABLE approval_tickets ADD COLUMN resolved_by TEXT",
        "ALTER TABLE approval_tickets ADD COLUMN escalated_at TEXT",
        "ALTER TABLE approval_tickets ADD COLUMN escalated_to TEXT",
        "ALTER TABLE approval_tickets ADD COLUMN deliveries TEXT",
        "ALTER TABLE approval_tickets ADD COLUMN notification_failures TEXT",
        "ALTER TABLE approval_tickets ADD COLUMN holder TEXT",
        "ALTER TABLE approval_tickets ADD COLUMN holder_seen_at TEXT",
        "ALTER TABLE approval_tickets ADD COLUMN consumed_at TEXT",
        "CREATE INDEX approval_tickets_call ON approval_tickets (session_id, tool_name, arguments_digest)",
        "CREATE INDEX approval_tickets_created_at ON approval_tickets (created_at)",
    ),
)

APPROVAL_TICKET_UPSTREAM = Migration(
    "0006_approval_ticket_upstream",
    (
        # The mount a held call was sent to (NULL: the single ``upstream:`` form): part of what
        # makes a retry "the same call", so an approval given for one upstream releases nothing
        # on another. Tickets written before it have NULL, which no named mount's retry matches.
        "ALTER TABLE approval_tickets ADD COLUMN upstream TEXT",
    ),
)

AUDIT_CONSOLE_INDEXES = Migration(
    "0007_audit_console_indexes",
    (
        # The console lists records newest first by (timestamp, seq) and pages with a keyset on
        # that pair; each filter has an index that serves its equality and the order together,
        # so a page costs one index range scan at any table size.
        "CREATE INDEX audit_records_time_seq ON audit_records (timestamp, seq)",
        "CREATE INDEX audit_records_tool_time ON audit_records (tool_name, timestamp, seq)",
        "CREATE INDEX audit_records_decision_time ON audit_records (policy_decision, timestamp, seq)",
        "CREATE INDEX audit_records_reason_time ON audit_records (block_reason, timestamp, seq)",
        "CREATE INDEX audit_records_rule_time ON audit_records (matched_rule, timestamp, seq)",
        "CREATE INDEX audit_records_session_time ON audit_records (session_id, timestamp, seq)",
        "CREATE INDEX audit_records_agent_time ON audit_records (agent_id, timestamp, seq)",
    ),
    {
        "sqlite": (
            # The upstream (mount) name lives in the metadata JSON; json_valid keeps a row with
            # unparsable metadata writable (it indexes as NULL).
            "CREATE INDEX audit_records_upstream_time ON audit_records ("
            "(CASE WHEN json_valid(metadata) THEN json_extract(metadata, '$.upstream') END), timestamp, seq)",
            # Word and prefix search in the arguments: an external-content FTS5 index over
            # tool_input, kept in step by triggers (retention deletes go through the trigger too).
            "CREATE VIRTUAL TABLE audit_records_fts USING fts5("
            "tool_input, content='audit_records', content_rowid='seq')",
            "INSERT INTO audit_records_fts (audit_records_fts) VALUES ('rebuild')",
            "CREATE TRIGGER audit_records_fts_insert AFTER INSERT ON audit_records BEGIN "
            "INSERT INTO audit_records_fts (rowid, tool_input) VALUES (new.seq, new.tool_input); END",
            "CREATE TRIGGER audit_records_fts_delete AFTER DELETE ON audit_records BEGIN "
            "INSERT INTO audit_records_fts (audit_records_fts, rowid, tool_input) "
            "VALUES ('delete', old.seq, old.tool_input); END",
            "CREATE TRIGGER audit_records_fts_update AFTER UPDATE OF tool_input ON audit_records BEGIN "
            "INSERT INTO audit_records_fts (audit_records_fts, rowid, tool_input) "
            "VALUES ('delete', old.seq, old.tool_input); "
            "INSERT INTO audit_records_fts (rowid, tool_input) VALUES (new.seq, new.tool_input); END",
        ),
        "postgresql": (
            # Metadata that is not JSON reads as NULL instead of failing the insert.
            "CREATE FUNCTION helio_audit_upstream(metadata TEXT) RETURNS TEXT "
            "LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$ BEGIN "
            "RETURN metadata::jsonb ->> 'upstream'; "
            "EXCEPTION WHEN others THEN RETURN NULL; END $$",
            "CREATE INDEX audit_records_upstream_time ON audit_records "
            "(helio_audit_upstream(metadata), timestamp, seq)",
            # Words are runs of letters and digits on both backends (FTS5's unicode61 splits
            # the same way), so 'ORD-42' is the words 'ord' and '42' everywhere.
            "CREATE INDEX audit_records_tool_input_search ON audit_records USING GIN "
            "(to_tsvector('simple', regexp_replace(coalesce(tool_input, ''), '[^[:alnum:]]+', ' ', 'g')))",
        ),
    },
)

AUDIT_SEARCH_NEWEST_FIRST = Migration(
    # 0008 is taken on another branch (session state); names only need to be unique and ordered.
    "0009_audit_search_newest_first",
    (),
    {
        "sqlite": (
            # FTS5 walks a word's matches in ascending rowid order without reading ahead, but
            # newest first (descending) it loads the word's whole match list: ~10 ms for a word in
            # a quarter of a million records, paid on every page. The word index becomes a
            # contentless FTS5 table whose rowid is the record's seq negated, so ascending rowid is
            # newest first and a page stops after the matches it needs. Prefix indexes for prefixes
            # of 2 to 6 characters let a last word typed in part ("shipm", an order id's digits)
            # be walked the same way instead of merging every matching word's list first.
            "DROP TRIGGER audit_records_fts_insert",
            "DROP TRIGGER audit_records_fts_delete",
            "DROP TRIGGER audit_records_fts_update",
            "DROP TABLE audit_records_fts",
            "CREATE VIRTUAL TABLE audit_records_words USING fts5(tool_input, content='', prefix='2 3 4 5 6')",
            "INSERT INTO audit_records_words (rowid, tool_input) SELECT -seq, tool_input FROM audit_records",
            "CREATE TRIGGER audit_records_words_insert AFTER INSERT ON audit_records BEGIN "
            "INSERT INTO audit_records_words (rowid, tool_input) VALUES (-new.seq, new.tool_input); END",
            # A contentless table forgets a row given the words it was indexed with.
            "CREATE TRIGGER audit_records_words_delete AFTER DELETE ON audit_records BEGIN "
            "INSERT INTO audit_records_words (audit_records_words, rowid, tool_input) "
            "VALUES ('delete', -old.seq, old.tool_input); END",
            "CREATE TRIGGER audit_records_words_update AFTER UPDATE OF tool_input ON audit_records BEGIN "
            "INSERT INTO audit_records_words (audit_records_words, rowid, tool_input) "
            "VALUES ('delete', -old.seq, old.tool_input); "
            "INSERT INTO audit_records_words (rowid, tool_input) VALUES (-new.seq, new.tool_input); END",
        ),
        "postgresql": (
            # The arguments' words stored beside them: a search that walks the newest records
            # checks each with a plain ``@@`` instead of re-tokenizing the JSON (a regexp and
            # to_tsvector per row), and the GIN index's recheck of its matches costs the same.
            "ALTER TABLE audit_records ADD COLUMN tool_input_words tsvector GENERATED ALWAYS AS ("
            "to_tsvector('simple', regexp_replace(coalesce(tool_input, ''), '[^[:alnum:]]+', ' ', 'g'))"
            ") STORED",
            "DROP INDEX audit_records_tool_input_search",
            "CREATE INDEX audit_records_words ON audit_records USING GIN (tool_input_words)",
        ),
    },
)

LIMIT_BUCKET_TOTALS = Migration(
    "0007_limit_bucket_totals",
    (
        # Running totals per bucket, so a charge is checked without adding up the window's rows:
        # ``charge_total`` (decimal text) and ``charge_count`` hold the charges younger than
        # ``counted_from`` (a sliding window's last cutoff; NULL for a session pot, which counts
        # from ``started_at``); ``oldest_at``/``newest_at`` date the charges counted. NULL totals
        # (buckets written before this migration) are summed from the rows once, on next use.
        "ALTER TABLE limit_buckets ADD COLUMN charge_total TEXT",
        "ALTER TABLE limit_buckets ADD COLUMN charge_count BIGINT",
        "ALTER TABLE limit_buckets ADD COLUMN counted_from TEXT",
        "ALTER TABLE limit_buckets ADD COLUMN oldest_at TEXT",
        "ALTER TABLE limit_buckets ADD COLUMN newest_at TEXT",
    ),
)

SESSION_STATE = Migration(
    "0008_session_state",
    (
        # One row per session holding its whole governance state (evidence, expired keys,
        # context, completed calls, declared dependencies) as a JSON document, so a governed
        # call's gate check is one primary-key read. ``live_until_ms`` is when a sweep may drop
        # it (no live evidence, idle); ``next_expiry_ms`` when its earliest evidence expires (a
        # sweep then rewrites it, freeing the bytes); ``bytes`` feeds the store-wide byte cap.
        """CREATE TABLE session_state (
            session_id TEXT PRIMARY KEY,
            state TEXT NOT NULL,
            bytes BIGINT NOT NULL,
            last_write_ms BIGINT NOT NULL,
            live_until_ms BIGINT NOT NULL,
            next_expiry_ms BIGINT
        )""",
        "CREATE INDEX session_state_live_until ON session_state (live_until_ms)",
        "CREATE INDEX session_state_next_expiry ON session_state (next_expiry_ms)",
    ),
)

KILL_SWITCH = Migration(
    "0010_kill_switch",
    (
        # One row per kill-switch scope ever used (``global``, ``upstream:NAME``, ``agent:ID``);
        # ``engaged`` says whether it blocks now. Every proxy on the store keeps these in memory.
        """CREATE TABLE kill_switch (
            scope TEXT PRIMARY KEY,
            engaged BOOLEAN NOT NULL,
            reason TEXT,
            actor TEXT,
            source TEXT,
            changed_at TEXT NOT NULL
        )""",
    ),
    {
        # The change bus (``store/changes.py``): one row per change other proxies must take up
        # (kill switch, accepted baselines, resolved approvals); polled as the fallback of
        # PostgreSQL's LISTEN/NOTIFY and as the only signal on SQLite. Ids grow with each change.
        "sqlite": (
            "CREATE TABLE store_changes (id INTEGER PRIMARY KEY AUTOINCREMENT, channel TEXT NOT NULL, "
            "payload TEXT, created_at TEXT NOT NULL)",
            "CREATE INDEX store_changes_created_at ON store_changes (created_at)",
        ),
        "postgresql": (
            "CREATE TABLE store_changes (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
            "channel TEXT NOT NULL, payload TEXT, created_at TEXT NOT NULL)",
            "CREATE INDEX store_changes_created_at ON store_changes (created_at)",
        ),
    },
)

# The whole reservation of one rate or spend charge, run by PostgreSQL in one statement (see
# ``limits/ledger.py``, ``ReserveInOne``): the statements :func:`~helio_proxy.limits.ledger.reserve`
# sends one by one, in the same order, with the same locks and per-statement snapshots (a
# VOLATILE function under READ COMMITTED), so a call's check costs one round trip instead of five.
_LIMIT_RESERVE_FUNCTION = """
CREATE OR REPLACE FUNCTION helio_limit_reserve(
    p_key TEXT, p_kind TEXT, p_owner TEXT, p_version TEXT, p_scope TEXT, p_subject TEXT,
    p_now TEXT, p_bound TEXT, p_idle TEXT, p_amount TEXT, p_limit TEXT, p_id TEXT, p_audit TEXT
) RETURNS TABLE (taken BOOLEAN, started TEXT, total TEXT, charges BIGINT, oldest TEXT, newest TEXT)
LANGUAGE plpgsql VOLATILE AS $fn$
#variable_conflict use_column
DECLARE
    row_ RECORD;
    v_started TEXT;
    v_activity TEXT;
    v_total NUMERIC;
    v_count BIGINT;
    v_from TEXT;
    v_oldest TEXT;
    v_newest TEXT;
    v_dirty BOOLEAN := FALSE;
    counted_after TEXT;
    aged_count BIGINT;
    aged_total NUMERIC;
    before_total NUMERIC;
BEGIN
    -- Create the bucket's row or lock it (an upsert that updates takes the row lock).
    INSERT INTO limit_buckets AS b (bucket_key, kind, owner, version, scope, subject, started_at,
        last_activity, charge_total, charge_count, counted_from)
    VALUES (p_key, p_kind, p_owner, p_version, p_scope, p_subject, p_now, p_now, '0', 0, p_bound)
    ON CONFLICT (bucket_key) DO UPDATE SET last_activity = b.last_activity
    RETURNING b.started_at, b.last_activity, b.charge_total, b.charge_count, b.counted_from,
        b.oldest_at, b.newest_at INTO row_;
    v_activity := row_.last_activity;
    v_started := row_.started_at;
    IF p_idle IS NOT NULL AND v_activity <= p_idle AND v_started < p_now THEN
        -- A session pot idle for idle_ttl starts over.
        v_started := p_now; v_total := 0; v_count := 0; v_from := NULL;
        v_oldest := NULL; v_newest := NULL; v_dirty := TRUE;
    ELSIF row_.charge_total IS NULL THEN
        -- A bucket from before running totals: add its rows up once.
        SELECT count(*), min(occurred_at), max(occurred_at), COALESCE(SUM(CAST(amount AS NUMERIC)), 0)
        INTO v_count, v_oldest, v_newest, v_total
        FROM limit_events
        WHERE bucket_key = p_key
          AND ((p_bound IS NOT NULL AND occurred_at > p_bound) OR (p_bound IS NULL AND occurred_at >= v_started));
        IF v_count = 0 THEN
            v_total := 0; v_oldest := NULL; v_newest := NULL;
        END IF;
        v_from := p_bound; v_dirty := TRUE;
        IF p_bound IS NOT NULL THEN
            DELETE FROM limit_events WHERE bucket_key = p_key AND occurred_at <= p_bound;
        END IF;
    ELSE
        v_total := CAST(row_.charge_total AS NUMERIC);
        v_count := COALESCE(row_.charge_count, 0);
        v_from := row_.counted_from;
        v_oldest := row_.oldest_at;
        v_newest := row_.newest_at;
        IF p_bound IS NOT NULL AND v_oldest IS NOT NULL AND v_oldest <= p_bound THEN
            -- Charges aged out of the sliding window since the bucket was last used: taken off once.
            counted_after := COALESCE(v_from, '');
            IF v_newest IS NULL OR v_newest <= p_bound THEN
                v_total := 0; v_count := 0; v_oldest := NULL; v_newest := NULL;
            ELSE
                SELECT count(*), COALESCE(SUM(CAST(amount AS NUMERIC)), 0) INTO aged_count, aged_total
                FROM limit_events
                WHERE bucket_key = p_key AND occurred_at > counted_after AND occurred_at <= p_bound;
                v_total := v_total - aged_total;
                v_count := v_count - aged_count;
                v_oldest := NULL;
                IF v_count > 0 THEN
                    SELECT occurred_at INTO v_oldest FROM limit_events
                    WHERE bucket_key = p_key AND occurred_at > p_bound ORDER BY occurred_at LIMIT 1;
                END IF;
            END IF;
            v_from := p_bound; v_dirty := TRUE;
            -- Only what aged out since the last cutoff (see _DELETE_AGED_SINCE in limits/ledger.py).
            DELETE FROM limit_events
            WHERE bucket_key = p_key AND occurred_at > counted_after AND occurred_at <= p_bound;
        END IF;
    END IF;
    before_total := CASE WHEN v_count = 0 THEN 0 ELSE v_total END;
    IF before_total + CAST(p_amount AS NUMERIC) > CAST(p_limit AS NUMERIC) THEN
        IF v_dirty THEN
            UPDATE limit_buckets SET started_at = v_started, last_activity = v_activity,
                charge_total = CAST(v_total AS TEXT), charge_count = v_count, counted_from = v_from,
                oldest_at = v_oldest, newest_at = v_newest
            WHERE bucket_key = p_key;
        END IF;
        RETURN QUERY SELECT FALSE, v_started, CAST(before_total AS TEXT), v_count, v_oldest, v_newest;
        RETURN;
    END IF;
    INSERT INTO limit_events (id, bucket_key, amount, occurred_at, audit_id)
    VALUES (p_id, p_key, p_amount, p_now, p_audit);
    UPDATE limit_buckets SET started_at = v_started, last_activity = p_now,
        charge_total = CAST(v_total + CAST(p_amount AS NUMERIC) AS TEXT), charge_count = v_count + 1,
        counted_from = v_from, oldest_at = COALESCE(v_oldest, p_now), newest_at = p_now
    WHERE bucket_key = p_key;
    RETURN QUERY SELECT TRUE, v_started, CAST(before_total AS TEXT), v_count, v_oldest, v_newest;
END
$fn$
"""

LIMIT_RESERVE_FUNCTION = Migration(
    "0011_limit_reserve_function",
    (),
    {"postgresql": (_LIMIT_RESERVE_FUNCTION,)},
)

LIMIT_BUCKETS_HOT_UPDATES = Migration(
    "0012_limit_buckets_hot_updates",
    (),
    {
        # Every reservation writes its bucket's last_activity. With an index on that column
        # PostgreSQL cannot update the row in place (a HOT update): each reservation wrote a
        # new entry into all three of the table's indexes (40-60 us of a 230-320 us reservation,
        # measured). The periodic prune finds idle buckets by scanning the table instead, every
        # ten minutes. SQLite rewrites the index entry either way (measured: no difference), and
        # keeps the index for its prune.
        "postgresql": ("DROP INDEX IF EXISTS limit_buckets_last_activity",),
    },
)

LIMIT_EVENTS_BY_BUCKET = Migration(
    "0013_limit_events_by_bucket",
    (
        # A charge wrote an entry into every index of limit_events; the one on occurred_at alone
        # served only the periodic prune, which now goes bucket by bucket over
        # limit_events_bucket (limits/ledger.py, prune). With the index below, a reservation's
        # commit on SQLite made 13.75 WAL writes before this migration and 9.4 after (strace).
        "DROP INDEX IF EXISTS limit_events_occurred_at",
        # Rows whose bucket an earlier prune deleted without them (the prune now deletes both).
        "DELETE FROM limit_events WHERE bucket_key NOT IN (SELECT bucket_key FROM limit_buckets)",
    ),
    {
        # As 0012 did on PostgreSQL: the prune finds idle buckets by scanning the (small) buckets
        # table instead of keeping an index every reservation rewrites.
        "sqlite": ("DROP INDEX IF EXISTS limit_buckets_last_activity",),
    },
)

SESSION_HISTORY = Migration(
    "0014_session_history",
    (
        # A store-backed session's completed calls, one row each, instead of an array in its
        # session_state document: that document was read, parsed, re-encoded and written whole on
        # every governed call, so a session's 1,000th call cost milliseconds more than its first
        # (docs/performance.md, the thirteenth look). ``seq`` counts the session's calls from 0;
        # rows older than the kept history (``max_calls_kept``) are deleted as new ones come.
        # A document written before this migration keeps its calls until its next write, which
        # moves them here.
        """CREATE TABLE session_history (
            session_id TEXT NOT NULL,
            seq BIGINT NOT NULL,
            call_id TEXT NOT NULL,
            tool_name TEXT NOT NULL,
            at_ms BIGINT NOT NULL,
            succeeded BOOLEAN NOT NULL,
            arguments TEXT,
            PRIMARY KEY (session_id, seq)
        )""",
        "CREATE INDEX session_history_call ON session_history (session_id, call_id)",
    ),
)

AUDIT_INDEXES_PRUNED = Migration(
    "0015_audit_indexes_pruned",
    (
        # Every audit record wrote an entry into each of audit_records' 17 indexes. Five of the
        # single-column ones of 0001 are the leading column of a (column, timestamp, seq) index of
        # 0007, which serves the same equality and range lookups; the one on origin served no
        # query (the origin filter is a case-insensitive substring, which no index answers). The
        # writer's insert of a record cost about 12 % less without them (docs/storage.md). Kept:
        # id (unique), record_kind (rare kinds, e.g. approval resolutions, found without a scan)
        # and the status range index.
        "DROP INDEX IF EXISTS audit_records_timestamp",
        "DROP INDEX IF EXISTS audit_records_tool_name",
        "DROP INDEX IF EXISTS audit_records_policy_decision",
        "DROP INDEX IF EXISTS audit_records_session_id",
        "DROP INDEX IF EXISTS audit_records_block_reason",
        "DROP INDEX IF EXISTS audit_records_origin",
    ),
)

MIGRATIONS: tuple[Migration, ...] = (
    AUDIT_SCHEMA,
    GOVERNANCE_SCHEMA,
    TOOL_BASELINE_PENDING,
    LIMIT_BUCKETS,
    APPROVAL_TICKET_STATE,
    APPROVAL_TICKET_UPSTREAM,
    AUDIT_CONSOLE_INDEXES,
    LIMIT_BUCKET_TOTALS,
    SESSION_STATE,
    AUDIT_SEARCH_NEWEST_FIRST,
    KILL_SWITCH,
    LIMIT_RESERVE_FUNCTION,
    LIMIT_BUCKETS_HOT_UPDATES,
    LIMIT_EVENTS_BY_BUCKET,
    SESSION_HISTORY,
    AUDIT_INDEXES_PRUNED,
)
"""Every migration, in the order it is applied."""

_LEDGER = "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"


def applied_migrations(conn: Connection) -> list[str]:
    """Names recorded in ``schema_migrations``, oldest first."""
    rows = conn.execute(text("SELECT name FROM schema_migrations ORDER BY name"))
    return [str(name) for (name,) in rows]


def apply_migrations(
    conn: Connection,
    *,
    lock: Callable[[Connection], None],
    migrations: Sequence[Migration] = MIGRATIONS,
) -> list[str]:
    """Apply every pending migration inside the caller's transaction; return the names applied.

    ``lock`` serializes concurrent openers (several replicas starting at once on PostgreSQL).
    """
    lock(conn)
    conn.execute(text(_LEDGER))
    done = applied_migrations(conn)
    known = [m.name for m in migrations]
    unknown = sorted(set(done) - set(known))
    if unknown:
        raise StoreError(
            f"the database has schema migrations this version does not know ({', '.join(unknown)}); "
            "it was written by a newer Helio: upgrade, or point audit.path/store.url elsewhere"
        )
    applied: list[str] = []
    for migration in migrations:
        if migration.name in done:
            continue
        for statement in migration.statements:
            conn.execute(text(statement))
        # Backend-specific SQL goes to the driver as written (PL/pgSQL bodies, FTS5 options).
        for statement in migration.dialects.get(conn.dialect.name, ()):
            conn.exec_driver_sql(statement)
        conn.execute(
            text("INSERT INTO schema_migrations (name, applied_at) VALUES (:name, :at)"),
            {"name": migration.name, "at": datetime.now(UTC).isoformat()},
        )
        applied.append(migration.name)
    return applied
