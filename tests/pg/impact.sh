# tests/pg/impact.sh -- migrate_impact and the impact policy against a real
# server (sourced by tests/pg/run.sh, which defines q, check, tap, newdb...):
#
#   make_impact_fixtures DIR   the folders of these tests and of t/15_impact.sql
#   impact_suite               the tests that need real commits and sessions:
#
# - the forms table: each DDL form below runs for real on a populated table,
#   in a transaction of a second session (dblink) or, for those that cannot
#   run in one, as a statement of its own held up by a third session, while
#   this session reads pg_locks for that backend and the relation's file
#   node: migrate_impact's lock_mode must equal the strongest lock really
#   taken on the relation, and rewrites a change of file node;
# - a session idle in a transaction that read the table is in blocked_by,
#   with its pid; impact does not wait for a session holding
#   AccessExclusiveLock;
# - nothing executes: catalogs, table contents and this transaction's
#   statistics are unchanged, and no lock on the table is taken;
# - the policy in both modes (SELECT migrate_apply, CALL migrate_run) and
#   from the migrate. settings; the off-hours script of the flagged
#   migrations run by psql, then apply runs the others (not out of order
#   since the script recorded them ahead; out of order without that mark).

# w_imp FOLDER FILE TEXT: as w in fixtures.sh.
w_imp() {
	mkdir -p "$FX/$1"
	printf '%b' "$3" >"$FX/$1/$2"
}

# The forms: number|how it runs|the relation migrate_impact must name|SQL.
# txn: in a transaction of a second session, rolled back after; writer /
# reader: on its own (it cannot run in a transaction), held up by a third
# session that wrote to / read the table, so that its locks can be seen.
IMPACT_FORMS='1|txn|public.f|ALTER TABLE f ADD COLUMN c1 int
2|txn|public.f|ALTER TABLE f ADD COLUMN c2 int DEFAULT 0
3|txn|public.f|ALTER TABLE f ADD COLUMN c3 timestamptz DEFAULT clock_timestamp()
4|txn|public.f|ALTER TABLE f ADD COLUMN c4 serial
5|txn|public.f|ALTER TABLE f ADD COLUMN c5 int GENERATED ALWAYS AS (v * 2) STORED
6|txn|public.f|ALTER TABLE f ADD COLUMN c6 int NOT NULL DEFAULT 7
7|txn|public.f|ALTER TABLE f ADD COLUMN c7 positive_int
8|txn|public.f|ALTER TABLE f DROP COLUMN s
9|txn|public.f|ALTER TABLE f ALTER COLUMN v TYPE bigint
10|txn|public.f|ALTER TABLE f ALTER COLUMN w TYPE varchar(40)
11|txn|public.f|ALTER TABLE f ALTER COLUMN w TYPE text
12|txn|public.f|ALTER TABLE f ALTER COLUMN k TYPE bigint USING k * 1
13|txn|public.f|ALTER TABLE f ALTER COLUMN w TYPE varchar(10)
14|txn|public.f|ALTER TABLE f ALTER COLUMN v SET NOT NULL
15|txn|public.f|ALTER TABLE f ALTER COLUMN v SET DEFAULT 5
16|txn|public.f|ALTER TABLE f ALTER COLUMN v SET STATISTICS 500
17|txn|public.f|ALTER TABLE f ADD CONSTRAINT f_c17 CHECK (v >= 0)
18|txn|public.f|ALTER TABLE f ADD CONSTRAINT f_c18 CHECK (v >= 0) NOT VALID
19|txn|public.f|ALTER TABLE f VALIDATE CONSTRAINT f_chk
20|txn|public.f|ALTER TABLE f ADD CONSTRAINT f_fk FOREIGN KEY (v) REFERENCES fp (id)
21|txn|public.f|ALTER TABLE f ADD CONSTRAINT f_fk2 FOREIGN KEY (v) REFERENCES fp (id) NOT VALID
22|txn|public.f|ALTER TABLE f ADD CONSTRAINT f_u UNIQUE (k)
23|txn|public.f|ALTER TABLE f ADD CONSTRAINT f_ku UNIQUE USING INDEX f_k_idx
24|txn|public.f|CREATE INDEX f_i24 ON f (w)
25|txn|public.f|CREATE UNIQUE INDEX f_i25 ON f (k, v)
26|txn|public.f_v_idx|DROP INDEX f_v_idx
27|txn|public.f_v_idx|REINDEX INDEX f_v_idx
28|txn|public.f|ALTER TABLE f RENAME TO f_renamed
29|txn|public.f|ALTER TABLE f RENAME COLUMN w TO w2
30|txn|public.f_v_idx|ALTER INDEX f_v_idx RENAME TO f_v_idx2
31|txn|public.f|ALTER TABLE f SET (fillfactor = 70)
32|txn|public.f|ALTER TABLE f SET UNLOGGED
33|txn|public.f|ALTER TABLE f CLUSTER ON f_v_idx
34|txn|public.f|CLUSTER f USING f_v_idx
35|txn|public.f|CREATE TRIGGER f_t35 BEFORE INSERT ON f FOR EACH ROW EXECUTE FUNCTION f_trg_fn()
36|txn|public.f|DROP TRIGGER f_trg ON f
37|txn|public.f|ALTER TABLE f DISABLE TRIGGER f_trg
38|txn|public.f|COMMENT ON TABLE f IS '"'"'x'"'"'
39|txn|public.f|CREATE STATISTICS f_st ON v, k FROM f
40|txn|public.f|ALTER TABLE f ENABLE ROW LEVEL SECURITY
41|txn|public.f|CREATE POLICY f_pol ON f USING (true)
42|txn|public.f|LOCK TABLE f IN SHARE MODE
43|txn|public.f|UPDATE f SET v = v
44|txn|public.f|DELETE FROM f WHERE id < 0
45|txn|public.f|INSERT INTO f (id, k) VALUES (-1, -1)
46|txn|public.f|ALTER TABLE f REPLICA IDENTITY FULL
47|txn|public.f|ALTER TABLE f OWNER TO impact_role
48|txn|public.f|CREATE TABLE fchild (id int PRIMARY KEY, f_id int REFERENCES f (id))
49|txn|public.fm|REFRESH MATERIALIZED VIEW fm
50|txn|public.fm|REFRESH MATERIALIZED VIEW CONCURRENTLY fm
51|txn|public.fpart_2|ALTER TABLE fpart ATTACH PARTITION fpart_2 FOR VALUES FROM (100) TO (200)
52|txn|public.f|ALTER TABLE f ALTER COLUMN k ADD GENERATED ALWAYS AS IDENTITY
53|txn|public.f|ALTER TABLE f SET TABLESPACE pg_default
54|txn|public.fs|ALTER SEQUENCE fs RESTART
55|txn|public.f|SELECT count(*) FROM f
56|writer|public.f|CREATE INDEX CONCURRENTLY f_i56 ON f (w)
57|writer|public.f_v_idx|DROP INDEX CONCURRENTLY f_v_idx
58|reader|public.f|VACUUM FULL f'

make_impact_fixtures() {
	local n mode rel sql
	# the forms, one folder each (in one folder, each would see what the
	# forms before it do: a table renamed away is no longer there)
	while IFS='|' read -r n mode rel sql; do
		w_imp "impact_form_$n" "$n""_form.up.sql" "$sql;\n"
	done <<<"$IMPACT_FORMS"

	# t/15_impact.sql
	w_imp impact_basic 1_create.up.sql "CREATE TABLE imp_new (id int PRIMARY KEY);\nCREATE INDEX imp_new_id ON imp_new (id);\n"
	w_imp impact_basic 2_alter.up.sql "-- what the big table goes through\nALTER TABLE imp_big ADD COLUMN c int DEFAULT 0;\nALTER TABLE imp_big\n  ALTER COLUMN v TYPE bigint;\nCREATE INDEX imp_big_v ON imp_big (v);\nALTER TABLE imp_new ADD COLUMN x int;\n"
	w_imp impact_basic 3_cic.up.sql "CREATE INDEX CONCURRENTLY imp_big_c ON imp_big (c);\n"
	w_imp impact_path 1_path.up.sql "ALTER TABLE imp_big ADD COLUMN p int;\nSET search_path = imp_s, public;\nALTER TABLE imp_big ADD COLUMN q int;\nALTER TABLE imp_renamed ADD COLUMN r int;\n"
	w_imp impact_path 0_rename.up.sql "ALTER TABLE imp_s.imp_big RENAME TO imp_renamed;\n"
	w_imp impact_notnull 1_check.up.sql "ALTER TABLE imp_big ADD CONSTRAINT imp_v_nn CHECK (v IS NOT NULL) NOT VALID;\n"
	w_imp impact_notnull 2_validate.up.sql "ALTER TABLE imp_big VALIDATE CONSTRAINT imp_v_nn;\n"
	w_imp impact_notnull 3_set.up.sql "ALTER TABLE imp_big ALTER COLUMN v SET NOT NULL;\n"
	w_imp impact_policy 1_small.up.sql "ALTER TABLE imp_small ALTER COLUMN v TYPE bigint;\n"
	w_imp impact_policy 2_big.up.sql "CREATE TABLE imp_log (id int);\n\nALTER TABLE imp_big ALTER COLUMN v TYPE bigint;\n"
	w_imp impact_accept 1_big.up.sql "-- migrate:accept rewrite public.imp_big\nALTER TABLE imp_big ALTER COLUMN v TYPE bigint;\n"
	w_imp impact_accept_other 1_big.up.sql "-- migrate:accept rewrite imp_small\nALTER TABLE imp_big ALTER COLUMN v TYPE bigint;\n"
	w_imp impact_accept_lock 1_big.up.sql "-- migrate:accept lock imp_big\nALTER TABLE imp_big ALTER COLUMN v TYPE bigint;\n"
	w_imp impact_accept_both 1_big.up.sql "-- migrate:accept lock, rewrite IMP_BIG\nALTER TABLE imp_big ALTER COLUMN v TYPE bigint;\n"
	w_imp impact_bad_marker 1_big.up.sql "SELECT 1;\n-- migrate:accept everything imp_big\nALTER TABLE imp_big ALTER COLUMN v TYPE bigint;\n"
	w_imp impact_lock 1_index.up.sql "CREATE INDEX imp_big_v2 ON imp_big (v);\n"
	w_imp impact_nocode 1_code.up.sql "ALTER TABLE imp_big ADD COLUMN z int DEFAULT imp_probe(1);\nALTER TABLE imp_big ALTER COLUMN v SET NOT NULL;\nALTER TABLE imp_big ADD COLUMN d imp_dom;\n"

	# impact_suite: the off-hours script; procedure mode
	w_imp impact_off 1_a.up.sql "CREATE TABLE off_a (id int);\n"
	w_imp impact_off 1_a.down.sql "DROP TABLE off_a;\n"
	w_imp impact_off 2_b.up.sql "ALTER TABLE off_big ALTER COLUMN v TYPE bigint;\n"
	w_imp impact_off 2_b.down.sql "ALTER TABLE off_big ALTER COLUMN v TYPE int;\n"
	w_imp impact_off 3_c.up.sql "CREATE TABLE off_c (id int);\n"
	w_imp impact_blocked 1_alter.up.sql "ALTER TABLE blk ADD COLUMN c int;\nCREATE INDEX blk_v ON blk (v);\n"
	w_imp impact_blocked 2_more.up.sql "ALTER TABLE blk ALTER COLUMN v TYPE bigint;\n"
}

# The strongest lock of backend pid on relation oid, as pg_locks names it
# (granted or awaited), in SQL.
IMPACT_MODE_SQL="(SELECT (ARRAY['AccessShareLock','RowShareLock','RowExclusiveLock','ShareUpdateExclusiveLock',
	'ShareLock','ShareRowExclusiveLock','ExclusiveLock','AccessExclusiveLock'])[max(array_position(ARRAY['AccessShareLock',
	'RowShareLock','RowExclusiveLock','ShareUpdateExclusiveLock','ShareLock','ShareRowExclusiveLock','ExclusiveLock',
	'AccessExclusiveLock'], mode))] FROM pg_locks WHERE locktype = 'relation' AND pid = \$1 AND relation = \$2)"

impact_forms_setup() {
	newdb impforms
	q impforms >/dev/null <<'EOF'
CREATE EXTENSION dblink;
DO $$ BEGIN CREATE ROLE impact_role; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
CREATE DOMAIN positive_int AS int CHECK (VALUE > 0);
CREATE TABLE fp (id int PRIMARY KEY);
INSERT INTO fp SELECT generate_series(0, 999);
CREATE TABLE f (id int PRIMARY KEY, v int, w varchar(20), s text, k int NOT NULL);
INSERT INTO f SELECT g, g % 1000, 'w' || g, md5(g::text), g FROM generate_series(1, 20000) g;
CREATE INDEX f_v_idx ON f (v);
CREATE UNIQUE INDEX f_k_idx ON f (k);
ALTER TABLE f ADD CONSTRAINT f_chk CHECK (v >= 0) NOT VALID;
CREATE FUNCTION f_trg_fn() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$;
CREATE TRIGGER f_trg BEFORE UPDATE ON f FOR EACH ROW EXECUTE FUNCTION f_trg_fn();
CREATE MATERIALIZED VIEW fm AS SELECT id FROM f;
CREATE UNIQUE INDEX fm_id ON fm (id);
CREATE TABLE fpart (id int, d int) PARTITION BY RANGE (d);
CREATE TABLE fpart_1 PARTITION OF fpart FOR VALUES FROM (0) TO (100);
CREATE TABLE fpart_2 (id int, d int);
INSERT INTO fpart_2 SELECT g, 100 + g % 100 FROM generate_series(1, 5000) g;
CREATE SEQUENCE fs;
ANALYZE;
CREATE TABLE forms (n int PRIMARY KEY, mode text, rel text, sql text);
CREATE TABLE seen (n int PRIMARY KEY, lock text, before oid, after oid);
EOF
	printf '%s\n' "$IMPACT_FORMS" | q impforms -c "COPY forms FROM STDIN WITH (DELIMITER '|')"
}

# Runs the forms that run in a transaction: for each, a second session
# (dblink) begins, runs it, reports its file node, waits; this session reads
# that backend's locks on the relation; then the second session rolls back.
impact_forms_txn() {
	q impforms >/dev/null <<EOF
CREATE FUNCTION pg_temp.run_txn_forms() RETURNS void LANGUAGE plpgsql AS \$f\$
DECLARE
	r record;
	apid int;
	rel oid;
	lk text;
	fn_before oid;
	fn_after oid;
BEGIN
	PERFORM dblink_connect('a', 'host=$PGHOST port=$PGPORT dbname=impforms user=$PGUSER');
	SELECT pid INTO apid FROM dblink('a', 'SELECT pg_backend_pid()') AS t(pid int);
	FOR r IN SELECT * FROM forms WHERE mode = 'txn' ORDER BY n LOOP
		BEGIN
			rel := to_regclass(r.rel);
			SELECT fnode INTO fn_before FROM dblink('a', format('SELECT pg_relation_filenode(%s)', rel::oid)) AS t(fnode oid);
			PERFORM dblink_exec('a', 'BEGIN');
			PERFORM * FROM dblink('a', r.sql) AS t(status text);
			SELECT fnode INTO fn_after FROM dblink('a', format('SELECT pg_relation_filenode(%s)', rel::oid)) AS t(fnode oid);
			EXECUTE \$q\$SELECT $IMPACT_MODE_SQL\$q\$ INTO lk USING apid, rel;
			PERFORM dblink_exec('a', 'ROLLBACK');
			INSERT INTO seen VALUES (r.n, lk, fn_before, fn_after);
		EXCEPTION WHEN OTHERS THEN
			PERFORM dblink_exec('a', 'ROLLBACK', false);
			INSERT INTO seen VALUES (r.n, 'error: ' || SQLERRM, NULL, NULL);
		END;
	END LOOP;
	PERFORM dblink_disconnect('a');
END
\$f\$;
SELECT pg_temp.run_txn_forms();
EOF
}

# Runs form N (SQL, relation REL) on its own, held up by a third session
# that wrote to (writer) or read (reader) the table, reads its locks while it
# waits, then lets it finish and reads the file node again.
impact_form_alone() {
	local n=$1 mode=$2 rel=$3 sql=$4 oid before apid lk after blocker
	oid=$(q impforms -c "SELECT to_regclass('$rel')::oid")
	before=$(q impforms -c "SELECT pg_relation_filenode($oid)")
	if [ "$mode" = writer ]; then
		blocker="INSERT INTO f (id, k) VALUES (-5, -5)"
	else
		blocker="SELECT count(*) FROM f"
	fi
	psql -X -q -d impforms -c "SET application_name = 'imp_blocker'" -c "BEGIN" -c "$blocker" \
		-c "SELECT pg_sleep(60)" >/dev/null 2>&1 &
	local bpid=$!
	for _ in $(seq 1 100); do
		[ "$(q impforms -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'imp_blocker' AND wait_event = 'PgSleep'")" = 1 ] && break
		sleep 0.05
	done
	PGAPPNAME=imp_form psql -X -q -d impforms -c "$sql" >/dev/null 2>&1 &
	local fpid=$!
	lk=
	for _ in $(seq 1 200); do
		apid=$(q impforms -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'imp_form' AND wait_event_type = 'Lock'")
		if [ -n "$apid" ]; then
			lk=$(q impforms -c "PREPARE m(int, oid) AS SELECT $IMPACT_MODE_SQL" -c "EXECUTE m($apid, $oid)")
			[ -n "$lk" ] && break
		fi
		sleep 0.05
	done
	q impforms -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'imp_blocker'" >/dev/null
	wait "$bpid" 2>/dev/null
	wait "$fpid"
	after=$(q impforms -c "SELECT pg_relation_filenode($oid)")
	q impforms -c "INSERT INTO seen VALUES ($n, NULLIF('$lk', ''), NULLIF('$before', '')::oid, NULLIF('$after', '')::oid)"
}

impact_forms_test() {
	local n mode rel sql out
	impact_forms_setup
	# what migrate_impact says, before anything runs
	q impforms -c "CREATE TABLE said AS SELECT f.n, i.relation, i.lock_mode, i.rewrites, i.relation_bytes
	                 FROM forms f, migrate_impact('$FX/impact_form_' || f.n) i"
	check "impact forms: one row per form, each naming a relation with its size" impforms \
		"SELECT count(*) = (SELECT count(*) FROM forms) AND bool_and(relation_bytes > 0) FROM said"
	impact_forms_txn
	while IFS='|' read -r n mode rel sql; do
		[ "$mode" = txn ] || impact_form_alone "$n" "$mode" "$rel" "$sql"
		# put back what a form that ran for good changed
		case $n in
		56) q impforms -c "DROP INDEX f_i56" >/dev/null ;;
		57) q impforms -c "CREATE INDEX f_v_idx ON f (v)" >/dev/null ;;
		esac
	done <<<"$IMPACT_FORMS"
	while IFS='|' read -r n rel_ok said_lock real_lock said_rw real_rw sql; do
		[ "$rel_ok" = t ] && [ "$said_lock" = "$real_lock" ] && [ "$said_rw" = "$real_rw" ]
		tap $? "impact form $n: $sql -- said $said_lock${said_rw:+ rewrites=$said_rw}, took $real_lock rewrites=$real_rw"
	done < <(q impforms -F '|' -c "SELECT f.n, s.relation IS NOT DISTINCT FROM f.rel, coalesce(s.lock_mode, '-'),
	           coalesce(e.lock, '-'), s.rewrites, coalesce(e.after <> e.before, false), f.sql
	      FROM forms f LEFT JOIN said s USING (n) LEFT JOIN seen e USING (n) ORDER BY f.n")
	out=$(q impforms -c "SELECT count(DISTINCT f.sql) FROM forms f JOIN said s USING (n) JOIN seen e USING (n)
	                      WHERE s.relation = f.rel AND s.lock_mode = e.lock AND s.rewrites = coalesce(e.after <> e.before, false)")
	[ "${out:-0}" -ge 25 ] && [ "$out" = "$(q impforms -c "SELECT count(*) FROM forms")" ]
	tap $? "impact forms: ${out:-0} DDL forms, each reported as the lock and file node change it really took (at least 25)"
}

# A session idle in a transaction that read the table is in blocked_by.
impact_blocked_test() {
	local bpid out
	newdb impblk
	q impblk -c "CREATE TABLE blk (id int PRIMARY KEY, v int)" \
		-c "INSERT INTO blk SELECT g, g FROM generate_series(1, 5000) g" -c "ANALYZE blk"
	psql -X -q -d impblk -c "SET application_name = 'imp_reader'" -c "BEGIN" -c "SELECT count(*) FROM blk" \
		-c "SELECT pg_sleep(60)" >/dev/null 2>&1 &
	bpid=$!
	for _ in $(seq 1 100); do
		[ "$(q impblk -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'imp_reader' AND wait_event = 'PgSleep'")" = 1 ] && break
		sleep 0.05
	done
	local rpid
	rpid=$(q impblk -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'imp_reader'")
	check "impact: a session in a transaction that read the table is in blocked_by of ALTER TABLE, with its pid" impblk \
		"SELECT blocked_by LIKE 'pid $rpid holds AccessShareLock (active, transaction open %' FROM migrate_impact('$FX/impact_blocked')
		  WHERE statement LIKE 'ALTER TABLE blk ADD%'"
	check "impact: ... and not of CREATE INDEX, whose ShareLock does not conflict with it" impblk \
		"SELECT blocked_by IS NULL FROM migrate_impact('$FX/impact_blocked') WHERE statement LIKE 'CREATE INDEX%'"
	q impblk -c "SELECT pg_terminate_backend($rpid)" >/dev/null
	wait "$bpid" 2>/dev/null
	# idle in transaction: a client that stopped between two statements
	exec 7> >(psql -X -q -d impblk >/dev/null 2>&1)
	printf "SET application_name = 'imp_idle';\nBEGIN;\nSELECT count(*) FROM blk;\n" >&7
	for _ in $(seq 1 100); do
		rpid=$(q impblk -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'imp_idle' AND state = 'idle in transaction'")
		[ -n "$rpid" ] && break
		sleep 0.05
	done
	out=$(q impblk -c "SELECT blocked_by FROM migrate_impact('$FX/impact_blocked') WHERE version = '2'")
	echo "$out" | grep -q "^pid $rpid holds AccessShareLock (idle in transaction, transaction open [0-9.]* s)$"
	tap_show $? "impact: a session idle in a transaction that read the table shows in blocked_by with its pid and transaction age" "$out"
	# this session's own locks are no one's obstacle
	out=$(q impblk -c "BEGIN" -c "SELECT count(*) FROM blk" \
		-c "SELECT count(*) FILTER (WHERE blocked_by LIKE '%pid ' || pg_backend_pid() || ' %') || ' ' || count(*)
		      FROM migrate_impact('$FX/impact_blocked')" -c "COMMIT" | tail -n 1)
	[ "$out" = "0 3" ]
	tap_show $? "impact: the caller's own transaction, which read the table, is not in blocked_by" "$out"
	exec 7>&-
	# a session holding AccessExclusiveLock: impact does not wait for it
	psql -X -q -d impblk -c "SET application_name = 'imp_locker'" -c "BEGIN" -c "LOCK TABLE blk" \
		-c "SELECT pg_sleep(60)" >/dev/null 2>&1 &
	bpid=$!
	for _ in $(seq 1 100); do
		[ "$(q impblk -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'imp_locker' AND wait_event = 'PgSleep'")" = 1 ] && break
		sleep 0.05
	done
	check "impact: a table locked AccessExclusiveLock by another session is analysed without waiting (statement_timeout 3 s)" impblk \
		"SET statement_timeout = '3s';
		 SELECT count(*) = 3 AND bool_and(blocked_by LIKE '%holds AccessExclusiveLock%') AND bool_and(relation_bytes > 0)
		   FROM migrate_impact('$FX/impact_blocked')"
	q impblk -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'imp_locker'" >/dev/null
	wait "$bpid" 2>/dev/null
}

# Nothing executes: catalogs, contents, statistics and locks as before.
impact_unchanged_test() {
	local cat0 cat1 data0 data1
	local catq="SELECT md5(string_agg(x, '|' ORDER BY x)) FROM (
		SELECT c.oid || ':' || c.relname || ':' || c.relfilenode || ':' || c.relpages || ':' || c.reltuples || ':' || c.relnatts || ':' || c.relhasindex AS x FROM pg_class c
		UNION ALL SELECT attrelid || ':' || attname || ':' || atttypid || ':' || attnotnull || ':' || atthasdef FROM pg_attribute
		UNION ALL SELECT conrelid || ':' || conname || ':' || convalidated FROM pg_constraint
		UNION ALL SELECT indexrelid || ':' || indisvalid FROM pg_index) s"
	cat0=$(q impblk -c "$catq")
	data0=$(q impblk -c "SELECT md5(string_agg(b::text, ',' ORDER BY id)) FROM blk b")
	out=$(q impblk -c "BEGIN" -c "SELECT count(*) FROM migrate_impact('$FX/impact_blocked')" \
		-c "SELECT (SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'relation' AND relation = 'blk'::regclass)
		        || ' ' || (SELECT seq_scan + coalesce(idx_scan, 0) + n_tup_ins + n_tup_upd + n_tup_del FROM pg_stat_xact_user_tables WHERE relname = 'blk')" -c "COMMIT")
	[ "$(echo "$out" | tail -n 1)" = "0 0" ] && [ "$(echo "$out" | head -n 1)" = 3 ]
	tap_show $? "impact: no lock on the table, no scan or write of it in the caller's transaction (pg_locks, pg_stat_xact_user_tables)" "$out"
	cat1=$(q impblk -c "$catq")
	data1=$(q impblk -c "SELECT md5(string_agg(b::text, ',' ORDER BY id)) FROM blk b")
	[ "$cat0" = "$cat1" ] && [ "$data0" = "$data1" ] && [ "$(echo "$out" | head -n 1)" = 3 ]
	tap $? "impact: the catalogs (pg_class with file nodes, pg_attribute, pg_constraint, pg_index) and the table's rows are unchanged"
}

# The policy where it needs commits: procedure mode, settings, the
# off-hours script run by psql.
impact_policy_test() {
	local out script
	newdb impoff
	q impoff -c "CREATE TABLE off_big (id int PRIMARY KEY, v int)" \
		-c "INSERT INTO off_big SELECT g, g FROM generate_series(1, 20000) g" -c "ANALYZE off_big"
	out=$(psql -X -q -At -v VERBOSITY=verbose -d impoff -c "CALL migrate_run('$FX/impact_off', 'no_rewrite=true')" 2>&1)
	echo "$out" | grep -q 'ERROR:  55000: the migration policy refuses "ALTER TABLE off_big ALTER COLUMN v TYPE bigint": it rewrites public.off_big ([0-9]* kB, 20000 rows) under AccessExclusiveLock' &&
		echo "$out" | grep -q "migration 2 (2_b.up.sql), line 1"
	tap_show $? "impact policy: CALL migrate_run refuses a rewrite before anything runs (file, line, relation, size, lock)" "$out"
	check "impact policy: ... and nothing ran, not even migration 1, committed alone in procedure mode" impoff \
		"SELECT to_regclass('off_a') IS NULL AND NOT EXISTS (SELECT FROM migrate_history)"
	out=$(PGOPTIONS="$PGOPTIONS -c migrate.no_rewrite=on -c migrate.max_size=100kB" \
		psql -X -q -At -v VERBOSITY=verbose -d impoff -c "SELECT migrate_apply('$FX/impact_off')" 2>&1)
	echo "$out" | grep -q "ERROR:  55000: the migration policy refuses" &&
		echo "$out" | grep -q "larger than 100 kB (max_size=)"
	tap_show $? "impact policy: migrate.no_rewrite and migrate.max_size are the defaults" "$out"
	fails_with "impact policy: migrate_plan refuses what apply would refuse" impoff 55000 \
		"SELECT * FROM migrate_plan('$FX/impact_off', 'no_rewrite=true');"
	check "impact policy: a max_size above the table's size spares it" impoff \
		"SELECT count(*) = 3 FROM migrate_plan('$FX/impact_off', 'no_rewrite=true, max_size=1GB')"
	# the off-hours script: only migration 2, recorded ahead of 1
	q impoff -c "SELECT migrate_script('$FX/impact_off', 'only=flagged, no_rewrite=true')" >"$PG_TMP/off.sql"
	grep -q "migration 2 (2_b.up.sql): the policy refuses 1 statement of it; recorded ahead" "$PG_TMP/off.sql" &&
		! grep -q "off_a\|off_c" "$PG_TMP/off.sql" && grep -q "migrate_script_ahead('2')" "$PG_TMP/off.sql"
	tap_show $? "impact off-hours: migrate_script only=flagged writes only the refused migration, recorded ahead" "$(cat "$PG_TMP/off.sql")"
	psql -X -q -v ON_ERROR_STOP=1 -d impoff -f "$PG_TMP/off.sql" >/dev/null 2>&1 &&
		grep -q "migrate_script_ahead" "$PG_TMP/off.sql"
	tap $? "impact off-hours: psql runs the script"
	check "impact off-hours: it rewrote the table and recorded migration 2 alone, ahead" impoff \
		"SELECT (SELECT atttypid = 'int8'::regtype FROM pg_attribute WHERE attrelid = 'off_big'::regclass AND attname = 'v')
		    AND (SELECT array_agg(version || ':' || ahead) FROM migrate_history) = '{2:true}'"
	# without the mark, migration 1 would be out of order
	q impoff -c "ALTER TABLE migrate_history DISABLE TRIGGER USER" -c "UPDATE migrate_history SET ahead = false" >/dev/null
	fails_with "impact off-hours: the same history without the mark makes migration 1 out of order (55000)" impoff 55000 \
		"SELECT migrate_apply('$FX/impact_off', 'no_rewrite=true');"
	q impoff -c "UPDATE migrate_history SET ahead = true" -c "ALTER TABLE migrate_history ENABLE TRIGGER USER" >/dev/null
	check "impact off-hours: then migrate_apply with the same policy applies the two others" impoff \
		"SELECT migrate_apply('$FX/impact_off', 'no_rewrite=true') = 2"
	check "impact off-hours: history 2, 1, 3 in order of application; status all applied" impoff \
		"SELECT (SELECT array_agg(version ORDER BY installed_rank) FROM migrate_history) = '{2,1,3}'
		    AND (SELECT bool_and(state = 'applied') FROM migrate_status('$FX/impact_off'))"
	psql -X -q -v ON_ERROR_STOP=1 -d impoff -f "$PG_TMP/off.sql" >/dev/null 2>&1
	[ $? != 0 ]
	tap $? "impact off-hours: ... psql stops at the duplicate version"
	fails_with "impact off-hours: migrate_script_ahead marks only a row its own transaction recorded" impoff 55000 \
		"BEGIN; SELECT pg_advisory_xact_lock($LOCK_KEY); SELECT migrate_script_ahead('1'); ROLLBACK;"
	out=$(psql -X -q -At -v VERBOSITY=verbose -d impoff -c "SELECT migrate_script('$FX/impact_off', 'only=flagged')" 2>&1)
	echo "$out" | grep -q "ERROR:  22023: option only=flagged needs an impact policy"
	tap_show $? "impact off-hours: only=flagged without a policy is refused (22023)" "$out"
}

impact_suite() {
	section "impact: the forms table, blocked_by, nothing executes, the policy"
	impact_forms_test
	impact_blocked_test
	impact_unchanged_test
	impact_policy_test
}
