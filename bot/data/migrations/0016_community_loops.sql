-- 16: the community's own loops.
-- The register says who owns a household (产权人) and how large it is (建筑面积, for a threshold by
-- area), and which steward household (党员中心户 / 红管家) looks after it (about ten each).
ALTER TABLE residents ADD COLUMN owner INTEGER NOT NULL DEFAULT 0;
ALTER TABLE households ADD COLUMN area_m2 REAL;
ALTER TABLE households ADD COLUMN steward_id INTEGER REFERENCES residents(id);
CREATE INDEX households_steward ON households(steward_id) WHERE steward_id IS NOT NULL;

-- 议事 / 定事: a question put to the households (or owners) of a scope, decided against a threshold
-- kind: 'approve' (the first option, 同意, must reach the threshold) or 'choose' (the leading option
-- must reach it). basis: the threshold counts households, owner households, or area.
-- secrecy: 'names' (staff may see each household's choice, for a filing) or 'tally' (staff see
-- counts and who voted, never a household's choice). Residents never see another's vote.
CREATE TABLE consultations (
    id INTEGER PRIMARY KEY,
    question TEXT NOT NULL,
    options TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT 'approve' CHECK (kind IN ('approve','choose')),
    electorate TEXT NOT NULL DEFAULT 'households' CHECK (electorate IN ('households','owners')),
    basis TEXT NOT NULL DEFAULT 'households' CHECK (basis IN ('households','owners','area')),
    threshold_num INTEGER NOT NULL DEFAULT 1,
    threshold_den INTEGER NOT NULL DEFAULT 2,
    secrecy TEXT NOT NULL DEFAULT 'names' CHECK (secrecy IN ('names','tally')),
    scope TEXT NOT NULL,
    unit TEXT NOT NULL DEFAULT '',       -- one unit (单元) of the one building in scope; '' = all
    state TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open','closed','cancelled')),
    opened_by INTEGER REFERENCES residents(id),
    created_at REAL NOT NULL,
    closes_at REAL NOT NULL,
    closed_at REAL,
    reminded_at REAL,
    result TEXT,
    alert_id INTEGER REFERENCES alerts(id),
    result_alert_id INTEGER REFERENCES alerts(id)
);
CREATE INDEX consultations_state ON consultations(state, closes_at);
CREATE INDEX consultations_alert ON consultations(alert_id) WHERE alert_id IS NOT NULL;

-- who may vote, fixed when the consultation opens; weight 1, or the household's area
CREATE TABLE consultation_voters (
    consultation_id INTEGER NOT NULL REFERENCES consultations(id),
    household_id INTEGER NOT NULL REFERENCES households(id),
    building_id INTEGER NOT NULL REFERENCES nodes(id),
    weight REAL NOT NULL DEFAULT 1,
    PRIMARY KEY (consultation_id, household_id)
) WITHOUT ROWID;
CREATE INDEX consultation_voters_building ON consultation_voters(consultation_id, building_id);

-- a notice that carries a consultation says how to vote instead of "reply 1 if received": the relay
-- words it from this when it plans the sends (before the consultation row points back at it)
ALTER TABLE alerts ADD COLUMN carries TEXT NOT NULL DEFAULT '';

-- every vote cast, changes included: the newest row of a household counts
CREATE TABLE ballots (
    id INTEGER PRIMARY KEY,
    consultation_id INTEGER NOT NULL REFERENCES consultations(id),
    household_id INTEGER NOT NULL REFERENCES households(id),
    choice INTEGER NOT NULL,
    resident_id INTEGER REFERENCES residents(id),
    by_proxy_id INTEGER REFERENCES residents(id),
    channel TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX ballots_household ON ballots(consultation_id, household_id, id);

-- 三单制 / 微心愿: a request (kind 'request') or a small wish (kind 'wish') staff opened for
-- registered volunteers and party members to claim; the claimant is its assignee, hours count
ALTER TABLE requests ADD COLUMN kind TEXT NOT NULL DEFAULT 'request';
ALTER TABLE requests ADD COLUMN claim_state TEXT;   -- NULL: not for claiming; 'open'; 'claimed'
ALTER TABLE requests ADD COLUMN claim_opened_at REAL;
ALTER TABLE requests ADD COLUMN claimed_by INTEGER REFERENCES residents(id);
ALTER TABLE requests ADD COLUMN claimed_at REAL;
ALTER TABLE requests ADD COLUMN hours REAL;
CREATE INDEX requests_claims ON requests(claim_state, claim_opened_at) WHERE claim_state IS NOT NULL;
CREATE INDEX requests_claimed_by ON requests(claimed_by, resolved_at) WHERE claimed_by IS NOT NULL;

-- 流动小红旗: the cross-evaluation scores compound branches enter per building per month
-- (category safety 安全 / hygiene 卫生 / civility 文明, 0-10); one row per evaluator, the newest kept
CREATE TABLE peer_scores (
    month TEXT NOT NULL,
    building_id INTEGER NOT NULL REFERENCES nodes(id),
    category TEXT NOT NULL CHECK (category IN ('safety','hygiene','civility')),
    by_id INTEGER NOT NULL REFERENCES residents(id),
    score REAL NOT NULL CHECK (score >= 0 AND score <= 10),
    at REAL NOT NULL,
    PRIMARY KEY (month, building_id, category, by_id)
) WITHOUT ROWID;

-- a month's ranking as published (frozen), and the notice that carried it
CREATE TABLE score_months (
    month TEXT PRIMARY KEY,
    ranking TEXT NOT NULL,
    published_at REAL NOT NULL,
    published_by INTEGER REFERENCES residents(id),
    alert_id INTEGER REFERENCES alerts(id)
);
