# tests/pg/tenants.sh -- tenants (issue 22) against a real server (sourced
# by tests/pg/run.sh, which defines q, qn, check, tap, fails_with, newdb...):
#
#   make_tenant_fixtures DIR   the folders of these tests
#   tenants_suite              the tests:
#
# - schema=S: two tenants get two histories and their own tables; the
#   caller's search_path is back after the call, after an error too; a
#   migration's own SET search_path wins for that migration only; an
#   unknown schema is 3F000 naming it; a role without CREATE on the schema
#   gets 42501 and nothing is written; migrate_status, migrate_down and the
#   call log are the tenant's;
# - locks: a caller holding one tenant's lock (its transaction open) does
#   not hold up another tenant's apply; a second caller of the same tenant
#   waits and then applies nothing (exactly once);
# - migrate_apply_each: on_error=stop (the default) and continue, canary=N,
#   the rows (applied, up_to_date, failed with SQLSTATE, file and line,
#   not_reached), a failed tenant rolled back alone, an unknown tenant, a
#   rerun that completes only what is missing, parallel= refused;
# - migrate_status_each: a row per tenant, no lock taken;
# - CALL migrate_run_each: the rows in its output parameter results
#   (through \gset and jsonb_to_recordset, as docs/tenants.md shows) and in
#   the call log; on_error, canary; a failed tenant committed up to its
#   last good migration, the rerun completing only what is missing; a
#   migration outside a transaction (CREATE INDEX CONCURRENTLY) in each
#   tenant, in the tenant's schema; a tenant failing there leaves no lock
#   and no worker behind while the fan-out goes on; the refusals;
# - skipped_locked (wait=0, if_locked=skip) of both fan-outs while another
#   session holds a tenant's lock;
# - reliability: pg_terminate_backend and pg_cancel_backend of a fan-out
#   over 30 tenants (both fan-outs): every tenant's tables equal its
#   history, and the reruns complete the rest exactly once.

# w_ten FOLDER FILE TEXT: as w in fixtures.sh.
w_ten() {
	mkdir -p "$FX/$1"
	printf '%b' "$3" >"$FX/$1/$2"
}

make_tenant_fixtures() {
	FX=$1
	umask 022
	w_ten ten_imp 1_a.up.sql "CREATE TABLE big (id int);\nINSERT INTO big SELECT generate_series(1, 1000);\n"
	w_ten ten_imp 2_b.up.sql "ALTER TABLE big ALTER COLUMN id TYPE bigint;\n"
	w_ten ten 1_a.up.sql "CREATE TABLE t1 (id int);\n"
	w_ten ten 1_a.down.sql "DROP TABLE t1;\n"
	w_ten ten 2_b.up.sql "-- fails where t2 exists already\nINSERT INTO t1 VALUES (1);\nCREATE TABLE t2 (id int);\n"
	w_ten ten 2_b.down.sql "DROP TABLE t2;\n"
	# its own search_path wins for itself, and only for itself
	w_ten ten_path 1_own.up.sql "SET search_path = ten_elsewhere;\nCREATE TABLE own_path (id int);\n"
	w_ten ten_path 2_back.up.sql "CREATE TABLE back_in_tenant (id int);\n"
	# a failing migration, for the search_path after an error
	w_ten ten_fail 1_ok.up.sql "CREATE TABLE before_fail (id int);\n"
	w_ten ten_fail 2_fail.up.sql "SET search_path = pg_catalog;\nSELECT 1/0;\n"
	# holds its tenant's lock for a while
	w_ten ten_slow 1_slow.up.sql "CREATE TABLE slow (id int);\nSELECT pg_catalog.pg_sleep(4);\n"
	# a migration outside a transaction between two in one
	w_ten ten_cic 1_a.up.sql "CREATE TABLE c1 (id int);\n"
	w_ten ten_cic 2_cic.up.sql "CREATE INDEX CONCURRENTLY c1_id ON c1 (id);\n"
	w_ten ten_cic 3_c.up.sql "CREATE TABLE c3 (id int);\n"
	w_ten ten_cic_slow 1_a.up.sql "CREATE TABLE c1 (id int);\n"
	w_ten ten_cic_slow 2_cic.up.sql "CREATE INDEX CONCURRENTLY c1_id ON c1 (id);\n"
	w_ten ten_cic_slow 3_c.up.sql "CREATE TABLE c3 (id int);\nSELECT pg_catalog.pg_sleep(3);\n"
	# a migration that fails at its commit (a deferred foreign key), where
	# the tenant has a row in marker
	w_ten ten_def 1_p.up.sql "CREATE TABLE p (id int PRIMARY KEY);\n"
	w_ten ten_def 2_c.up.sql "CREATE TABLE c (pid int REFERENCES p DEFERRABLE INITIALLY DEFERRED);\nINSERT INTO c SELECT 1 FROM marker;\n"
	w_ten ten_def 3_z.up.sql "CREATE TABLE z (id int);\n"
	# three migrations that take a while, for the kills
	for v in 1 2 3; do
		w_ten ten_sleep ${v}_s.up.sql "CREATE TABLE s$v (id int);\nINSERT INTO s$v VALUES ($v);\nSELECT pg_catalog.pg_sleep(0.05);\n"
	done
}

# run_each DB SOURCE TENANTS [OPTIONS]: CALL migrate_run_each, and its
# results as rows tenant|applied|status|sqlstate (psql's \gset, then
# jsonb_to_recordset, as docs/tenants.md shows)
run_each() {
	local opts=
	[ -n "${4:-}" ] && opts=", '$4'"
	printf '%s\n' "CALL migrate_run_each('$2', '$3'$opts) \\gset" \
		"SELECT tenant, applied, status, sqlstate FROM jsonb_to_recordset(:'results'::jsonb)
		   AS r(tenant text, applied int, status text, sqlstate text, error text);" |
		psql -X -q -At -v ON_ERROR_STOP=1 -d "$1"
}

# consistent DB PREFIX N: whether each of the tenants PREFIX1..PREFIXN has
# exactly the tables its history says (s1..s3 of ten_sleep: a migration is
# there entirely, its row and its table with its row, or not at all)
consistent() {
	q "$1" -c "SELECT bool_and((h.version IS NOT NULL) = (to_regclass('$2' || i || '.s' || v) IS NOT NULL))
	              AND bool_and(h.version IS NULL OR
	                           (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %I.%I',
	                                  '$2' || i, 's' || v), false, true, '')))[1]::text = '1')
	           FROM generate_series(1, $3) i CROSS JOIN generate_series(1, 3) v
	           LEFT JOIN migrate_history h ON h.tenant = '$2' || i AND h.version = v::text"
}


tenants_suite() {
	local out t0 ms pid
	newdb ten
	q ten -c "CREATE SCHEMA acme" -c "CREATE SCHEMA globex" -c "CREATE SCHEMA ten_elsewhere" \
		-c "CREATE SCHEMA initech" -c "CREATE SCHEMA pf" -c "CREATE SCHEMA pf2" -c "CREATE SCHEMA slowa" -c "CREATE SCHEMA slowb"

	# ---- schema= ----
	out=$(q ten -c "SELECT migrate_apply('$FX/ten', 'schema=acme')" \
		-c "SELECT migrate_apply('$FX/ten', 'schema=globex')" \
		-c "SELECT migrate_apply('$FX/ten', 'schema=acme')" 2>&1)
	tap_show $([ "$out" = "$(printf '2\n2\n0')" ]; echo $?) \
		"tenants: schema= applies to each tenant once (2, 2, then 0)" "$out"
	check "tenants: two histories, one per tenant, none for the default" ten \
		"SELECT array_agg(tenant || ':' || version ORDER BY tenant, version) = '{acme:1,acme:2,globex:1,globex:2}'
		 FROM migrate_history"
	check "tenants: the tables are in the tenants' schemas, none in public" ten \
		"SELECT array_agg(table_schema || '.' || table_name ORDER BY 1) = '{acme.t1,acme.t2,globex.t1,globex.t2}'
		 FROM information_schema.tables WHERE table_name IN ('t1', 't2')"
	check "tenants: the default history is untouched by the tenants' (a plain apply applies 2)" ten \
		"SELECT migrate_apply('$FX/ten') = 2"
	check "tenants: and records them as the default's (tenant '')" ten \
		"SELECT count(*) = 2 FROM migrate_history WHERE tenant = ''"
	check "tenants: migrate_status with schema= reads the tenant's history" ten \
		"SELECT array_agg(state ORDER BY version) = '{applied,applied}' FROM migrate_status('$FX/ten', 'schema=globex')"
	check "tenants: migrate_status of a tenant with nothing applied: all pending" ten \
		"SELECT array_agg(state ORDER BY version) = '{pending,pending}' FROM migrate_status('$FX/ten', 'schema=initech')"
	check "tenants: migrate_down(1, 'schema=globex') rolls back one" ten \
		"SELECT migrate_down(1, 'schema=globex') = 1"
	check "tenants: globex's only" ten \
		"SELECT (SELECT array_agg(tenant || ':' || version ORDER BY tenant, version) FROM migrate_history WHERE tenant <> '')
		     = '{acme:1,acme:2,globex:1}'
		 AND to_regclass('globex.t2') IS NULL AND to_regclass('globex.t1') IS NOT NULL
		 AND to_regclass('acme.t2') IS NOT NULL"
	check "tenants: the call log names the tenant of each call" ten \
		"SELECT array_agg(tenant || ':' || function ORDER BY id) =
		 '{acme:migrate_apply,globex:migrate_apply,acme:migrate_apply,:migrate_apply,globex:migrate_down}'
		 FROM migrate_calls"

	q ten -c "CREATE SCHEMA imp" -c "SELECT migrate_apply('$FX/ten_imp', 'schema=imp, target=1')" >/dev/null
	check "tenants: migrate_impact with schema= resolves the migration's names in the tenant" ten \
		"SELECT array_agg(version || ':' || relation || ':' || rewrites) = '{2:imp.big:true}'
		 FROM migrate_impact('$FX/ten_imp', 'schema=imp')"
	q ten -c "CREATE SCHEMA runs" && q ten -c "CALL migrate_run('$FX/ten', 'schema=runs')" >/dev/null 2>&1
	check "tenants: CALL migrate_run with schema= commits into the tenant's history and schema" ten \
		"SELECT (SELECT array_agg(version ORDER BY version) FROM migrate_history WHERE tenant = 'runs') = '{1,2}'
		 AND to_regclass('runs.t2') IS NOT NULL"
	check "tenants: migrate_baseline with schema= records into the tenant's history" ten \
		"CREATE SCHEMA based; SELECT migrate_baseline('$FX/ten', '1', 'schema=based') = 1"

	# search_path: the caller's is back after the call, after an error too
	out=$(q ten -c "SET search_path = ten_elsewhere, public" \
		-c "SELECT migrate_apply('$FX/ten_path', 'schema=pf')" -c "SHOW search_path" 2>&1)
	tap_show $([ "$out" = "$(printf '2\nten_elsewhere, public')" ]; echo $?) \
		"tenants: the caller's search_path is back after the call" "$out"
	check "tenants: a migration's own SET search_path wins for that migration, the next one runs in the tenant" ten \
		"SELECT to_regclass('ten_elsewhere.own_path') IS NOT NULL AND to_regclass('pf.own_path') IS NULL
		 AND to_regclass('pf.back_in_tenant') IS NOT NULL"
	out=$(psql -X -q -At -v VERBOSITY=verbose -d ten -c "SET search_path = ten_elsewhere, public" \
		-c "SELECT migrate_apply('$FX/ten_fail', 'schema=pf2')" -c "SHOW search_path" 2>&1)
	echo "$out" | grep -q "ERROR:  22012:" && [ "$(echo "$out" | tail -n 1)" = "ten_elsewhere, public" ]
	tap_show $? "tenants: the caller's search_path is back after a failed call (22012)" "$out"
	check "tenants: and the failed call left nothing in the tenant" ten \
		"SELECT to_regclass('pf2.before_fail') IS NULL
		 AND NOT EXISTS (SELECT FROM migrate_history WHERE tenant = 'pf2')"

	# unknown schema, rights
	out=$(psql -X -q -At -v VERBOSITY=verbose -d ten -c "SELECT migrate_apply('$FX/ten', 'schema=nope')" 2>&1)
	echo "$out" | grep -q 'ERROR:  3F000: schema "nope" does not exist'
	tap_show $? "tenants: an unknown tenant is 3F000 naming it" "$out"
	fails_with "tenants: a system schema is no tenant (42939)" ten 42939 \
		"SELECT migrate_apply('$FX/ten', 'schema=pg_catalog')"
	q ten -c "CREATE ROLE ten_user" -c "GRANT pg_read_server_files TO ten_user" \
		-c "GRANT EXECUTE ON FUNCTION migrate_apply(text, text) TO ten_user" \
		-c "CREATE SCHEMA ten_own AUTHORIZATION ten_user" -c "GRANT USAGE ON SCHEMA initech TO ten_user"
	out=$(psql -X -q -At -v VERBOSITY=verbose -d ten -c "SET ROLE ten_user" \
		-c "SELECT migrate_apply('$FX/ten', 'schema=initech')" 2>&1)
	echo "$out" | grep -q 'ERROR:  42501: permission denied for schema initech'
	tap_show $? "tenants: a role without CREATE on the schema cannot migrate it (42501)" "$out"
	check "tenants: and nothing of initech was written or created" ten \
		"SELECT NOT EXISTS (SELECT FROM migrate_history WHERE tenant = 'initech') AND to_regclass('initech.t1') IS NULL"
	check "tenants: the same role migrates its own schema" ten \
		"SET ROLE ten_user; SELECT migrate_apply('$FX/ten', 'schema=ten_own') = 2"
	check "tenants: as itself" ten \
		"SELECT (SELECT tableowner FROM pg_tables WHERE schemaname = 'ten_own' AND tablename = 't1') = 'ten_user'"

	# ---- locks ----
	q ten -c "SELECT migrate_apply('$FX/ten_slow', 'schema=slowa')" >"$PG_TMP/ten_slow.out" 2>&1 &
	pid=$!
	sleep 1
	t0=$(date +%s%N)
	out=$(q ten -c "SELECT migrate_apply('$FX/ten', 'schema=slowb')" 2>&1)
	ms=$(ms_since "$t0")
	[ "$out" = 2 ] && [ "$ms" -lt 2000 ]
	tap_show $? "tenants: another tenant's apply does not wait for a tenant's lock ($ms ms)" "$out"
	out=$(q ten -c "SELECT migrate_apply('$FX/ten_slow', 'schema=slowa')" 2>&1)
	wait $pid
	[ "$out" = 0 ] && [ "$(cat "$PG_TMP/ten_slow.out")" = 1 ]
	tap_show $? "tenants: a second caller of the same tenant waits, then applies nothing" "$out $(cat "$PG_TMP/ten_slow.out")"
	check "tenants: the tenant's migration is recorded once" ten \
		"SELECT count(*) = 1 FROM migrate_history WHERE tenant = 'slowa'"

	# ---- migrate_apply_each ----
	q ten -c "DO \$\$ BEGIN FOR i IN 1..8 LOOP EXECUTE format('CREATE SCHEMA e%s', i); END LOOP; END \$\$" \
		-c "CREATE TABLE e2.t2 (id int)" -c "CREATE TABLE e6.t2 (id int)"
	out=$(qn ten -c "SELECT tenant, applied, status, sqlstate FROM migrate_apply_each('$FX/ten', '{e1,e2,e3}')" 2>&1)
	tap_show $([ "$(echo "$out" | grep -v NOTICE)" = "$(printf 'e1|2|applied|\ne2|0|failed|42P07\ne3|0|not_reached|')" ]; echo $?) \
		"tenants: apply_each stops at the first failure by default (applied, failed, not_reached)" "$out"
	echo "$out" | grep -q "NOTICE:  tenant e1: applied 2 migrations" &&
		echo "$out" | grep -q "NOTICE:  tenant e2: failed: "
	tap_show $? "tenants: apply_each reports each tenant as a NOTICE" "$out"
	check "tenants: the failed row names the file and the line" ten \
		"SELECT error ~ '2_b.up.sql' AND error ~ 'line 3' FROM migrate_apply_each('$FX/ten', '{e2}') "
	check "tenants: the failed tenant was rolled back alone (e1 kept, e2 has nothing, e3 untouched)" ten \
		"SELECT (SELECT array_agg(tenant || ':' || version ORDER BY tenant, version) FROM migrate_history
		         WHERE tenant ~ '^e') = '{e1:1,e1:2}'
		 AND to_regclass('e2.t1') IS NULL AND to_regclass('e3.t1') IS NULL"
	out=$(q ten -c "SELECT tenant, applied, status, sqlstate FROM migrate_apply_each('$FX/ten', '{e1,e2,e3,e4}', 'on_error=continue')" 2>&1)
	tap_show $([ "$out" = "$(printf 'e1|0|up_to_date|\ne2|0|failed|42P07\ne3|2|applied|\ne4|2|applied|')" ]; echo $?) \
		"tenants: on_error=continue goes on after a failure; a rerun does only what is missing" "$out"
	out=$(q ten -c "SELECT tenant, applied, status, sqlstate FROM migrate_apply_each('$FX/ten', '{e5,e6,e7,e8}', 'on_error=continue,canary=2')" 2>&1)
	tap_show $([ "$out" = "$(printf 'e5|2|applied|\ne6|0|failed|42P07\ne7|0|not_reached|\ne8|0|not_reached|')" ]; echo $?) \
		"tenants: canary=2: a failure among the first 2 stops the rest, whatever on_error says" "$out"
	q ten -c "DROP TABLE e2.t2, e6.t2"
	out=$(q ten -c "SELECT tenant, applied, status FROM migrate_apply_each('$FX/ten', '{e1,e2,e3,e4,e5,e6,e7,e8}', 'canary=2')" 2>&1)
	tap_show $([ "$out" = "$(printf 'e1|0|up_to_date\ne2|2|applied\ne3|0|up_to_date\ne4|0|up_to_date\ne5|0|up_to_date\ne6|2|applied\ne7|2|applied\ne8|2|applied')" ]; echo $?) \
		"tenants: the rerun completes exactly the failed and not reached tenants" "$out"
	check "tenants: every e tenant has its two migrations, once" ten \
		"SELECT count(*) = 16 AND count(DISTINCT (tenant, version)) = 16 FROM migrate_history WHERE tenant ~ '^e'"
	out=$(q ten -c "SELECT tenant, status, sqlstate FROM migrate_apply_each('$FX/ten', '{e1,nope}', 'on_error=continue')" 2>&1)
	tap_show $([ "$out" = "$(printf 'e1|up_to_date|\nnope|failed|3F000')" ]; echo $?) \
		"tenants: an unknown tenant of apply_each fails alone with 3F000" "$out"
	fails_with "tenants: apply_each refuses parallel= (0A000), pointing to migrate_run_each" ten 0A000 \
		"SELECT * FROM migrate_apply_each('$FX/ten', '{e1}', 'parallel=4')"
	fails_with "tenants: apply_each refuses schema= (22023)" ten 22023 \
		"SELECT * FROM migrate_apply_each('$FX/ten', '{e1}', 'schema=e1')"
	fails_with "tenants: apply_each refuses a NULL tenant (22004)" ten 22004 \
		"SELECT * FROM migrate_apply_each('$FX/ten', '{e1,NULL}')"
	check "tenants: apply_each of the folder as JSON" ten \
		"CREATE SCHEMA ej; SELECT status = 'applied' AND applied = 1 FROM migrate_apply_each(
		   '{\"1_j.up.sql\": \"CREATE TABLE j (id int);\"}'::jsonb, '{ej}')"
	q ten -c "CREATE SCHEMA rb1" -c "CREATE SCHEMA rb2" -c "BEGIN" \
		-c "SELECT count(*) FROM migrate_apply_each('$FX/ten', '{rb1,rb2}')" -c "ROLLBACK" >/dev/null
	check "tenants: in the caller's transaction: a rollback takes back every tenant" ten \
		"SELECT NOT EXISTS (SELECT FROM migrate_history WHERE tenant IN ('rb1', 'rb2')) AND to_regclass('rb1.t1') IS NULL"

	# batches: the tenants run several to a subtransaction; a failure rolls
	# the batch back and runs the tenants again, the failed one alone: each
	# tenant still applied once, one notice and one call row each
	q ten -c "DO \$\$ BEGIN FOR i IN 1..12 LOOP EXECUTE format('CREATE SCHEMA bt%s', i); END LOOP; END \$\$" \
		-c "CREATE TABLE bt7.t2 (id int)"
	out=$(qn ten -c "SELECT tenant, applied, status, sqlstate FROM migrate_apply_each('$FX/ten',
	        ARRAY(SELECT 'bt' || g FROM generate_series(1, 12) g), 'on_error=continue')" 2>&1)
	want=$(for i in $(seq 1 12); do
		if [ "$i" = 7 ]; then echo "bt7|0|failed|42P07"; else echo "bt$i|2|applied|"; fi
	done)
	[ "$(echo "$out" | grep -v NOTICE)" = "$want" ] &&
		[ "$(echo "$out" | grep -c "NOTICE:  tenant bt")" = 12 ] &&
		[ "$(echo "$out" | grep -c "NOTICE:  tenant bt7: failed")" = 1 ]
	tap_show $? "tenants: a failure in the middle of a batch: the others applied, one notice each" "$out"
	check "tenants: a batch's tenants applied once each, the failed one not at all" ten \
		"SELECT count(*) = 22 AND count(DISTINCT (tenant, version)) = 22
		   AND count(*) FILTER (WHERE tenant = 'bt7') = 0
		 FROM migrate_history WHERE tenant ~ '^bt'"
	check "tenants: a batch's tenants have one call row each, the failed one an error once" ten \
		"SELECT count(*) = 12 AND count(DISTINCT tenant) = 12
		   AND count(*) FILTER (WHERE outcome = 'error') = 1
		   AND bool_and(outcome = 'error') FILTER (WHERE tenant = 'bt7')
		 FROM migrate_calls WHERE tenant ~ '^bt' AND function = 'migrate_apply_each'"
	out=$(q ten -c "SELECT string_agg(status, ',') FROM migrate_apply_each('$FX/ten',
	        ARRAY(SELECT 'bt' || g FROM generate_series(1, 12) g), 'on_error=continue')" 2>&1)
	[ "$out" = "up_to_date,up_to_date,up_to_date,up_to_date,up_to_date,up_to_date,failed,up_to_date,up_to_date,up_to_date,up_to_date,up_to_date" ]
	tap_show $? "tenants: a batch of up-to-date tenants around a failing one" "$out"

	# the no-op shortcut per tenant: stored by the apply that completed the
	# folder; a write of one tenant's history (by the extension) turns off
	# that tenant's shortcut only
	ten_noop() {	# ten_noop TENANT: applied, then the history's scans
		q ten -c "BEGIN" -c "SELECT migrate_apply('$FX/ten', 'schema=$1')" \
			-c "SELECT seq_scan + coalesce(idx_scan, 0) FROM pg_stat_xact_user_tables
				 WHERE relname = 'migrate_history'" -c "COMMIT" 2>&1 | tr '\n' ' ' | sed 's/ $//'
	}
	q ten -c "CREATE SCHEMA na" -c "CREATE SCHEMA nb" \
		-c "SELECT count(*) FROM migrate_apply_each('$FX/ten', '{na,nb}')" >/dev/null
	out=$(ten_noop na)
	[ "$out" = "0 0" ]
	tap_show $? "tenants: after apply_each, a no-op of a tenant does not read the history" "$out"
	q ten -c "SELECT migrate_down(1, 'schema=nb')" >/dev/null
	out=$(ten_noop na)
	[ "$out" = "0 0" ]
	tap_show $? "tenants: a write of another tenant's history leaves the shortcut on" "$out"
	out=$(ten_noop nb)
	[ "$out" = "1 1" ]
	tap_show $? "tenants: the written tenant's shortcut is off: its migration applies again" "$out"
	# the trigger deletes a tenant's digest once per transaction; a
	# rolled-back savepoint brings the digest back, and the next write
	# deletes it again
	q ten -c "BEGIN" -c "SAVEPOINT a" -c "SELECT migrate_down(1, 'schema=nb')" \
		-c "ROLLBACK TO SAVEPOINT a" -c "SELECT migrate_down(1, 'schema=nb')" -c "COMMIT" >/dev/null
	out=$(ten_noop nb)
	[ "$out" = "1 1" ]
	tap_show $? "tenants: a write after a rolled-back savepoint turns the shortcut off too" "$out"
	# the call log's old rows go once per transaction, not once per tenant
	q ten -c "INSERT INTO migrate_calls (started_at, finished_at, function, role, outcome, tenant)
	          VALUES (now() - interval '200 days', now() - interval '200 days', 'old', 'x', 'ok', 'na')" >/dev/null
	q ten -c "SELECT count(*) FROM migrate_apply_each('$FX/ten', '{na,nb}')" >/dev/null
	check "tenants: apply_each deletes the call log's rows past migrate.call_log_days" ten \
		"SELECT NOT EXISTS (SELECT FROM migrate_calls WHERE function = 'old')"

	# ---- migrate_status_each ----
	check "tenants: status_each: a row per tenant (up_to_date, pending, error)" ten \
		"SELECT array_agg(tenant || ':' || applied || ':' || pending || ':' || coalesce(newest, '-') || ':' || state
		   ORDER BY tenant) = '{e1:2:0:2:up_to_date,initech:0:2:-:pending,nope:0:0:-:error}'
		 FROM migrate_status_each('$FX/ten', '{e1,initech,nope}')"
	q ten -c "BEGIN" -c "SELECT migrate_apply('$FX/ten', 'schema=rb1')" -c "SELECT pg_sleep(3)" -c "COMMIT" >/dev/null 2>&1 &
	pid=$!
	sleep 1
	t0=$(date +%s%N)
	out=$(q ten -c "SELECT state FROM migrate_status_each('$FX/ten', '{rb1}')" 2>&1)
	ms=$(ms_since "$t0")
	wait $pid
	[ "$out" = pending ] && [ "$ms" -lt 1500 ]
	tap_show $? "tenants: status_each takes no lock: it does not wait for a running apply ($ms ms)" "$out"

	# ---- CALL migrate_run_each ----
	q ten -c "DO \$\$ BEGIN FOR i IN 1..8 LOOP EXECUTE format('CREATE SCHEMA r%s', i); END LOOP; END \$\$" \
		-c "CREATE TABLE r2.t2 (id int)" -c "CREATE TABLE r6.t2 (id int)"
	out=$(run_each ten "$FX/ten" '{r1,r2,r3}' 2>&1)
	tap_show $([ "$out" = "$(printf 'r1|2|applied|\nr2|1|failed|42P07\nr3|0|not_reached|')" ]; echo $?) \
		"tenants: run_each stops at the first failure by default (applied, failed after 1, not_reached)" "$out"
	check "tenants: run_each committed the failed tenant up to its last good migration, not the failed one" ten \
		"SELECT (SELECT array_agg(tenant || ':' || version ORDER BY tenant, version) FROM migrate_history
		         WHERE tenant ~ '^r[0-9]$') = '{r1:1,r1:2,r2:1}'
		 AND to_regclass('r2.t1') IS NOT NULL AND NOT EXISTS (SELECT FROM r2.t1)
		 AND to_regclass('r3.t1') IS NULL"
	check "tenants: run_each logs a call per tenant that ran (ok with its count; error with SQLSTATE, file and line)" ten \
		"SELECT array_agg(tenant || ':' || outcome || ':' || migrations || ':' || coalesce(sqlstate, '') ORDER BY id)
		          = '{r1:ok:2:,r2:error:1:42P07}'
		    AND bool_or(message ~ '2_b.up.sql' AND message ~ 'line 3')
		 FROM migrate_calls WHERE function = 'migrate_run_each'"
	out=$(printf '%s\n' "CALL migrate_run_each('$FX/ten', '{r1,r2}')" |
		PGOPTIONS="-c client_min_messages=notice" psql -X -q -At -d ten 2>&1)
	echo "$out" | grep -q "NOTICE:  tenant r1: up to date" &&
		echo "$out" | grep -q "NOTICE:  tenant r2: failed: relation \"t2\" already exists" &&
		echo "$out" | grep -q '"status": "failed"'
	tap_show $? "tenants: run_each reports each tenant as a NOTICE, and psql shows its results" "$out"
	out=$(run_each ten "$FX/ten" '{r1,r2,r3,r4}' 'on_error=continue' 2>&1)
	tap_show $([ "$out" = "$(printf 'r1|0|up_to_date|\nr2|0|failed|42P07\nr3|2|applied|\nr4|2|applied|')" ]; echo $?) \
		"tenants: run_each on_error=continue goes on after a failure" "$out"
	out=$(run_each ten "$FX/ten" '{r5,r6,r7,r8}' 'on_error=continue, canary=2' 2>&1)
	tap_show $([ "$out" = "$(printf 'r5|2|applied|\nr6|1|failed|42P07\nr7|0|not_reached|\nr8|0|not_reached|')" ]; echo $?) \
		"tenants: run_each canary=2: a failure among the first 2 stops the rest" "$out"
	q ten -c "DROP TABLE r2.t2, r6.t2"
	out=$(run_each ten "$FX/ten" '{r1,r2,r3,r4,r5,r6,r7,r8}' 2>&1)
	tap_show $([ "$out" = "$(printf 'r1|0|up_to_date|\nr2|1|applied|\nr3|0|up_to_date|\nr4|0|up_to_date|\nr5|0|up_to_date|\nr6|1|applied|\nr7|2|applied|\nr8|2|applied|')" ]; echo $?) \
		"tenants: the run_each rerun completes exactly what is missing (r2, r6: their second migration)" "$out"
	check "tenants: every r tenant has its two migrations, once, and its tables" ten \
		"SELECT count(*) = 16 AND count(DISTINCT (tenant, version)) = 16
		    AND (SELECT count(*) FROM pg_tables WHERE schemaname ~ '^r[1-8]$' AND tablename IN ('t1', 't2')) = 16
		 FROM migrate_history WHERE tenant ~ '^r[1-8]$'"

	# migrations outside a transaction, in each tenant's own schema
	q ten -c "CREATE SCHEMA ci1" -c "CREATE SCHEMA ci2" -c "CREATE SCHEMA ci3" \
		-c "CREATE TABLE ci2.other (id int)" -c "CREATE INDEX c1_id ON ci2.other (id)"
	out=$(run_each ten "$FX/ten_cic" '{ci1}' 2>&1)
	tap_show $([ "$out" = "ci1|3|applied|" ]; echo $?) \
		"tenants: run_each runs a CREATE INDEX CONCURRENTLY migration in a tenant" "$out"
	check "tenants: the index is valid, in the tenant's schema, on the tenant's table" ten \
		"SELECT indisvalid AND indrelid = 'ci1.c1'::regclass FROM pg_index WHERE indexrelid = 'ci1.c1_id'::regclass"
	q ten -c "CREATE SCHEMA cr" -c "CALL migrate_run('$FX/ten_cic', 'schema=cr')" >/dev/null 2>&1
	check "tenants: CALL migrate_run with schema= runs a migration outside a transaction in the tenant's schema" ten \
		"SELECT indisvalid AND indrelid = 'cr.c1'::regclass FROM pg_index WHERE indexrelid = 'cr.c1_id'::regclass"
	# ci2 fails in its CREATE INDEX CONCURRENTLY (c1_id exists), ci3 then
	# sleeps in its third migration: meanwhile, ci2 has no lock and no worker
	q ten -c "CALL migrate_run_each('$FX/ten_cic_slow', '{ci2,ci3}', 'on_error=continue')" >"$PG_TMP/ten_cif.out" 2>&1 &
	pid=$!
	sleep 1.5
	out=$(q ten -c "SELECT (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = 1835624308
	                          AND objid = 'ci2'::regnamespace::oid)
	                    || ':' || (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = 1835624308
	                          AND objid = 'ci3'::regnamespace::oid)
	                    || ':' || (SELECT count(*) <= 1 FROM pg_stat_activity WHERE backend_type = 'migrate worker')" 2>&1)
	wait $pid
	tap_show $([ "$out" = "0:1:true" ]; echo $?) \
		"tenants: a tenant failing outside a transaction leaves no lock and no worker while the fan-out goes on" \
		"$out $(cat "$PG_TMP/ten_cif.out")"
	out=$(run_each ten "$FX/ten_cic_slow" '{ci2,ci3}' 'on_error=continue' 2>&1)
	tap_show $([ "$out" = "$(printf 'ci2|0|failed|42P07\nci3|0|up_to_date|')" ]; echo $?) \
		"tenants: so the tenant failed alone, and the next one ran its own CREATE INDEX CONCURRENTLY" "$out"
	check "tenants: ci2 kept its first migration; no worker or lock is left behind" ten \
		"SELECT (SELECT array_agg(version ORDER BY version) FROM migrate_history WHERE tenant = 'ci2') = '{1}'
		    AND (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'migrate worker') = 0
		    AND (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory') = 0
		    AND (SELECT indisvalid FROM pg_index WHERE indexrelid = 'ci3.c1_id'::regclass)"

	# a tenant failing at a commit (outside the guard): the next one goes on
	q ten -c "CREATE SCHEMA df1" -c "CREATE SCHEMA df2" -c "CREATE TABLE df1.marker AS SELECT 1 AS x" \
		-c "CREATE TABLE df2.marker (x int)"
	out=$(run_each ten "$FX/ten_def" '{df1,df2}' 'on_error=continue' 2>&1)
	tap_show $([ "$out" = "$(printf 'df1|1|failed|23503\ndf2|3|applied|')" ]; echo $?) \
		"tenants: run_each: a tenant failing at its commit (a deferred constraint) fails alone" "$out"
	check "tenants: and kept only what it committed before" ten \
		"SELECT (SELECT array_agg(version ORDER BY version) FROM migrate_history WHERE tenant = 'df1') = '{1}'
		    AND to_regclass('df1.c') IS NULL AND to_regclass('df2.z') IS NOT NULL"

	fails_with "tenants: run_each refuses to run inside a transaction block (2D000)" ten 2D000 \
		"BEGIN; CALL migrate_run_each('$FX/ten', '{r1}');"
	fails_with "tenants: run_each refuses NULL tenants (22004)" ten 22004 \
		"CALL migrate_run_each('$FX/ten', NULL)"
	fails_with "tenants: run_each refuses a NULL tenant (22004)" ten 22004 \
		"CALL migrate_run_each('$FX/ten', '{r1,NULL}')"
	fails_with "tenants: run_each refuses schema= (22023)" ten 22023 \
		"CALL migrate_run_each('$FX/ten', '{r1}', 'schema=r1')"
	q ten -c "CREATE SCHEMA rj" \
		-c "CALL migrate_run_each('{\"1_j.up.sql\": \"CREATE TABLE j (id int);\"}'::jsonb, '{rj}')" >/dev/null
	check "tenants: run_each of the folder as JSON" ten \
		"SELECT to_regclass('rj.j') IS NOT NULL AND EXISTS (SELECT FROM migrate_history WHERE tenant = 'rj')"

	out=$(run_each ten "$FX/ten" '{r1,nope}' 'on_error=continue' 2>&1)
	tap_show $([ "$out" = "$(printf 'r1|0|up_to_date|\nnope|0|failed|3F000')" ]; echo $?) \
		"tenants: an unknown tenant of run_each fails alone with 3F000" "$out"
	out=$(run_each ten "$FX/ten" '{}' 2>&1)
	tap_show $([ -z "$out" ]; echo $?) "tenants: run_each over no tenant does nothing" "$out"

	# four fan-outs racing over the same tenants: each migration once
	q ten -c "DO \$\$ BEGIN FOR i IN 1..12 LOOP EXECUTE format('CREATE SCHEMA race%s', i); END LOOP; END \$\$"
	for i in 1 2 3 4; do
		q ten -c "CALL migrate_run_each('$FX/ten_sleep', '{$(seq -s, -f 'race%g' 1 12)}')" >/dev/null 2>&1 &
	done
	wait
	check "tenants: four run_each racing over the same 12 tenants apply each migration once" ten \
		"SELECT count(*) = 36 AND count(DISTINCT (tenant, version)) = 36 FROM migrate_history WHERE tenant ~ '^race'"
	[ "$(consistent ten race 12)" = t ]
	tap $? "tenants: and every racing tenant has its three tables, each with its one row"

	# ---- skipped_locked: another session holds a tenant's lock ----
	q ten -c "CREATE SCHEMA sk1" -c "CREATE SCHEMA sk2" -c "CREATE SCHEMA sk3" -c "CREATE SCHEMA sk4"
	q ten -c "SELECT pg_advisory_lock(1835624308, 'sk1'::regnamespace::oid::int),
	                 pg_advisory_lock(1835624308, 'sk3'::regnamespace::oid::int), pg_sleep(3)" >/dev/null 2>&1 &
	pid=$!
	sleep 1
	out=$(run_each ten "$FX/ten" '{sk1,sk2}' 'wait=0, if_locked=skip' 2>&1)
	tap_show $([ "$out" = "$(printf 'sk1|0|skipped_locked|\nsk2|2|applied|')" ]; echo $?) \
		"tenants: run_each skips a tenant whose lock another session holds (skipped_locked)" "$out"
	out=$(q ten -c "SELECT tenant, applied, status FROM migrate_apply_each('$FX/ten', '{sk3,sk4}', 'wait=0, if_locked=skip')" 2>&1)
	tap_show $([ "$out" = "$(printf 'sk3|0|skipped_locked\nsk4|2|applied')" ]; echo $?) \
		"tenants: apply_each skips a tenant whose lock another session holds (skipped_locked)" "$out"
	wait $pid
	check "tenants: the skipped tenants are logged as skipped, and untouched" ten \
		"SELECT (SELECT array_agg(tenant || ':' || outcome ORDER BY id) FROM migrate_calls WHERE tenant ~ '^sk')
		          = '{sk1:skipped,sk2:ok,sk3:skipped,sk4:ok}'
		    AND to_regclass('sk1.t1') IS NULL AND to_regclass('sk3.t1') IS NULL"

	# ---- reliability: the fan-out's backend terminated, then cancelled ----
	local fn tenants sql
	for fn in run apply; do
		q ten -c "DO \$\$ BEGIN FOR i IN 1..30 LOOP EXECUTE format('CREATE SCHEMA k${fn}%s', i); END LOOP; END \$\$"
		tenants="{$(seq -s, -f "k${fn}%g" 1 30)}"
		if [ $fn = run ]; then
			sql="CALL migrate_run_each('$FX/ten_sleep', '$tenants')"
		else
			sql="SELECT count(*) FROM migrate_apply_each('$FX/ten_sleep', '$tenants')"
		fi
		PGAPPNAME=fanout q ten -c "$sql" >"$PG_TMP/ten_kill.out" 2>&1 &
		pid=$!
		sleep 1.5
		q ten -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'fanout'" >/dev/null
		wait $pid
		grep -q "terminating connection due to administrator command" "$PG_TMP/ten_kill.out"
		tap_show $? "tenants: ${fn}_each's backend terminated in the middle of the fan-out" "$(cat "$PG_TMP/ten_kill.out")"
		[ "$(consistent ten "k$fn" 30)" = t ]
		tap $? "tenants: after the kill, every tenant's tables equal its history (${fn}_each)"
		if [ $fn = run ]; then
			check "tenants: and some of run_each's tenants were done, not all" ten \
				"SELECT count(*) BETWEEN 1 AND 89 FROM migrate_history WHERE tenant ~ '^krun'"
		fi
		PGAPPNAME=fanout q ten -c "$sql" >"$PG_TMP/ten_kill.out" 2>&1 &
		pid=$!
		sleep 1.5
		q ten -c "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'fanout'" >/dev/null
		wait $pid
		grep -q "canceling statement due to user request" "$PG_TMP/ten_kill.out"
		tap_show $? "tenants: ${fn}_each cancelled in the middle ends the whole fan-out (57014)" "$(cat "$PG_TMP/ten_kill.out")"
		[ "$(consistent ten "k$fn" 30)" = t ]
		tap $? "tenants: after the cancel, every tenant's tables equal its history (${fn}_each)"
		q ten -c "$sql" >/dev/null 2>&1
		check "tenants: the rerun completes the rest, each migration exactly once (${fn}_each)" ten \
			"SELECT count(*) = 90 AND count(DISTINCT (tenant, version)) = 90
			 FROM migrate_history WHERE tenant ~ '^k$fn'"
		[ "$(consistent ten "k$fn" 30)" = t ]
		tap $? "tenants: and every tenant has its three tables, each once (${fn}_each)"
	done
}
