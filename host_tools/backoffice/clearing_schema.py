"""Migration 2 of the central store: clearing's own tables (docs/backoffice.md, "Clearing").

Clearing never changes `trips`: what it decides about each accepted record, the charges, the
payment results and the deny lists it fed back are in these tables, keyed by the record's identity
(reader_id, seq, rec_hash, service_day). The clearing role writes them, the reporting role reads
them. Placeholders ({p}clearing, ...) are filled in by central._render."""

CLEARING_LOCK = 7_461_101   # pg_advisory_lock key: one clearing run (or deny-list build) at a time

SCHEMA_V2 = r"""
-- the service days each upload batch brought: a clearing run looks only at the days of the
-- batches committed since the last run (NULL for batches from before this column: every day)
ALTER TABLE upload_batches ADD COLUMN days date[];

CREATE TABLE clearing_settings (key text PRIMARY KEY, value text NOT NULL);
INSERT INTO clearing_settings (key, value) VALUES
    ('sharing_window', '60'),      -- s: one account on two readers this close is flagged
    ('update_grace', '259200'),    -- s: a reader may keep a replaced key ring or configuration
    ('currency', 'CNY');           -- of the charge files (amounts are minor units)

-- inputs, from signed files (fare clearing load): the issuer key ring's history and the
-- readers' configurations (fares and the rules clearing checks again)
CREATE TABLE clearing_keyrings (
    version    bigint PRIMARY KEY,
    created    bigint NOT NULL,
    sha256     bytea NOT NULL,
    loaded_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE clearing_keys (
    key_id      bigint PRIMARY KEY,
    public_key  bytea NOT NULL,
    valid_from  bigint NOT NULL,
    valid_until bigint NOT NULL,
    retired_at  bigint,             -- created time of the first ring that says retired
    first_ring  bigint NOT NULL
);
CREATE TABLE clearing_configs (
    line            bigint NOT NULL,
    created         bigint NOT NULL,
    version         bigint NOT NULL,
    sha256          bytea NOT NULL,
    max_code_age    bigint NOT NULL,
    clock_skew      bigint NOT NULL,
    transfer_window bigint NOT NULL,
    fares           jsonb NOT NULL,   -- {product: fare} of its own line
    loaded_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (line, created, version)
);
-- a configuration is in force from its creation until its successor's creation plus the grace a
-- reader may take to get the successor (update_grace)
CREATE VIEW clearing_config_periods AS
SELECT c.*, lead(c.created) OVER (PARTITION BY c.line ORDER BY c.created, c.version) AS next_created
FROM clearing_configs c;

-- every credential seen inside an accepted record, verified once
CREATE TABLE clearing_credentials (
    cred_hash   bytea PRIMARY KEY,          -- SHA-256 of the credential bytes
    cred_id     bytea NOT NULL,
    key_id      bigint NOT NULL,
    account     u64 NOT NULL,
    product     bigint NOT NULL,
    valid_from  bigint NOT NULL,
    valid_until bigint NOT NULL,
    max_rides   bigint NOT NULL,
    max_amount  u64 NOT NULL,
    issuer_sig  text NOT NULL,              -- ok, bad_issuer_sig, unknown_key
    first_batch integer NOT NULL            -- batch_no of the run that first saw it
);
CREATE INDEX clearing_credentials_id ON clearing_credentials (cred_id);

-- one row per accepted trip record: the verdict of its re-verification and where it stands
CREATE TABLE clearing_rides (
    reader_id   bigint NOT NULL,
    seq         bigint NOT NULL,
    rec_hash    bytea NOT NULL,
    service_day date NOT NULL,
    time        bigint NOT NULL,
    line        bigint NOT NULL,
    fare        bigint NOT NULL,
    account     u64 NOT NULL,
    counter     u64 NOT NULL,
    cred_id     bytea NOT NULL,
    cred_hash   bytea,                      -- the credential inside the code (NULL: unparsable)
    product     bigint,
    verdict     text NOT NULL,              -- ok, or why the record does not stand
    detail      text,
    -- charge: charged in batch batch_no (to be, while that batch does not exist yet); bad: the
    -- record does not stand; held: its reader's day waits for a decision; void: the operator
    -- decided not to charge it; duplicate: another record of the same code is charged
    state       text NOT NULL CHECK (state IN ('charge', 'bad', 'held', 'void', 'duplicate')),
    batch_no    integer NOT NULL,           -- the batch it went into, or the run that saw it
    PRIMARY KEY (reader_id, service_day, seq, rec_hash)
);
CREATE INDEX clearing_rides_code ON clearing_rides (cred_hash, counter);
CREATE INDEX clearing_rides_account ON clearing_rides (account, time);
-- batch numbers grow with the table (rides are appended as runs verify them): a block range
-- index finds a batch's rides for almost nothing per insert
CREATE INDEX clearing_rides_batch ON clearing_rides USING brin (batch_no);
CREATE INDEX clearing_rides_waiting ON clearing_rides (service_day) WHERE state IN ('held', 'bad');

-- a reader's service day with records that do not stand: its rides wait for an operator
CREATE TABLE clearing_suspects (
    reader_id   bigint NOT NULL,
    service_day date NOT NULL,
    bad_records integer NOT NULL,
    verdicts    jsonb NOT NULL,             -- {verdict: records}
    evidence    jsonb NOT NULL,             -- the first records: seq, verdict, detail
    decision    text CHECK (decision IN ('charge', 'void')),
    decided_by  text,
    note        text,
    decided_at  timestamptz,
    PRIMARY KEY (reader_id, service_day)
);

-- one ride code (credential and counter) accepted more than once
CREATE TABLE clearing_duplicates (
    cred_hash   bytea NOT NULL,
    counter     u64 NOT NULL,
    cred_id     bytea NOT NULL,
    account     u64 NOT NULL,
    records     integer NOT NULL,
    readers     integer NOT NULL,
    rides       jsonb NOT NULL,             -- every record: reader, seq, time, state
    kept_reader bigint NOT NULL,            -- the one record that is charged
    kept_seq    bigint NOT NULL,
    PRIMARY KEY (cred_hash, counter)
);

-- one account accepted by two readers within the sharing window (different codes)
CREATE TABLE clearing_sharing (
    account   u64 NOT NULL,
    reader_a  bigint NOT NULL,
    seq_a     bigint NOT NULL,
    hash_a    bytea NOT NULL,
    time_a    bigint NOT NULL,
    reader_b  bigint NOT NULL,
    seq_b     bigint NOT NULL,
    hash_b    bytea NOT NULL,
    time_b    bigint NOT NULL,
    PRIMARY KEY (reader_a, seq_a, hash_a, reader_b, seq_b, hash_b)
);

-- credentials whose rides across all readers went past their offline limits
CREATE TABLE clearing_exposure (
    cred_hash   bytea PRIMARY KEY,
    cred_id     bytea NOT NULL,
    account     u64 NOT NULL,
    max_rides   bigint NOT NULL,
    max_amount  u64 NOT NULL,
    rides       integer NOT NULL,
    amount      bigint NOT NULL,
    readers     integer NOT NULL,
    over_rides  integer NOT NULL,
    over_amount bigint NOT NULL
);

-- settlement batches and the charge per account in each
CREATE TABLE clearing_batches (
    batch_no   integer PRIMARY KEY,         -- 1, 2, 3, ...
    batch_id   text NOT NULL UNIQUE,        -- YYYYMMDD-n: its last service day, n-th batch of it
    through    date NOT NULL,
    rides      integer NOT NULL,
    accounts   integer NOT NULL,
    amount     bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE clearing_charges (
    charge_id text PRIMARY KEY,             -- batch_id/account
    batch_id  text NOT NULL REFERENCES clearing_batches (batch_id),
    account   u64 NOT NULL,
    rides     integer NOT NULL,
    amount    bigint NOT NULL,
    UNIQUE (batch_id, account)
);
CREATE INDEX clearing_charges_account ON clearing_charges (account);
CREATE TABLE clearing_payments (
    charge_id   text NOT NULL REFERENCES clearing_charges,
    status      text NOT NULL CHECK (status IN ('paid', 'failed')),
    at          bigint NOT NULL,
    reason      text NOT NULL,
    file_sha256 bytea NOT NULL,
    imported_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (charge_id, at, status)
);

-- bookkeeping: the upload batches a run has taken in, and every run
CREATE TABLE clearing_seen_batches (batch_id bigint PRIMARY KEY);
CREATE TABLE clearing_runs (
    run_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    through     date NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    verified    bigint,
    batch_id    text,
    status      text NOT NULL DEFAULT 'running'
);

-- deny lists built from clearing (fare denylist build --from-central): each version, the full
-- list's bytes (the base of the next delta) and why each id is on it
CREATE TABLE denylist_versions (
    version    bigint PRIMARY KEY,
    created    bigint NOT NULL,
    file       bytea NOT NULL,
    sha256     bytea NOT NULL,
    entries    integer NOT NULL,
    added      integer NOT NULL,
    removed    integer NOT NULL,
    settings   jsonb NOT NULL,
    built_at   timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE denylist_entries (
    version bigint NOT NULL REFERENCES denylist_versions,
    kind    text NOT NULL,                  -- account, credential
    id      text NOT NULL,                  -- decimal account, or credential id in hex
    reason  text NOT NULL,
    detail  text NOT NULL,
    expiry  bigint NOT NULL,                -- 0: none
    PRIMARY KEY (version, kind, id)
);
"""

TABLES = ("clearing_settings", "clearing_keyrings", "clearing_keys", "clearing_configs",
          "clearing_credentials", "clearing_rides", "clearing_suspects", "clearing_duplicates",
          "clearing_sharing", "clearing_exposure", "clearing_batches", "clearing_charges",
          "clearing_payments", "clearing_seen_batches", "clearing_runs", "denylist_versions",
          "denylist_entries")

SCHEMA_V2 += "GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO {p}clearing;\n" % ", ".join(TABLES)
SCHEMA_V2 += "GRANT SELECT ON %s, clearing_config_periods TO {p}clearing, {p}reporting;\n" % (
    ", ".join(TABLES))
SCHEMA_V2 += "GRANT USAGE ON SEQUENCE clearing_runs_run_id_seq TO {p}clearing;\n"
