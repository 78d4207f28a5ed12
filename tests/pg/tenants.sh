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
# - migrate_status_each: a row per tenant, no lock taken.

# w_ten FOLDER FILE TEXT: as w in fixtures.sh.
w_ten() {
	mkdir -p "$FX/$1"
	printf '%b' "$3" >"$FX/$1/$2"
}

make_tenant_fixtures() {
	FX=$1
	umask 022
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
}
