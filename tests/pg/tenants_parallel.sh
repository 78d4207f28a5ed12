# tests/pg/tenants_parallel.sh -- CALL migrate_run_each(..., 'parallel=N')
# (issue 22) against a real server (sourced by tests/pg/run.sh, which
# defines q, qn, check, tap_show, fails_with, newdb...):
#
#   make_parallel_fixtures DIR   the folders of these tests
#   parallel_suite               the tests:
#
# - parallel=2 over 20 tenants: the same result rows, histories and
#   schemas as the serial fan-out, and the tenants were migrated by two
#   background workers (migrate_calls.backend_pid), not the caller;
# - a failing tenant: on_error=continue goes on, its row has the SQLSTATE,
#   file and line; on_error=stop stops the workers taking more (the rest
#   not_reached and untouched); canary=N runs first, in the caller;
# - who runs: a non-superuser caller's tables are its own, current_user
#   and session_user recorded by a migration are the caller's; SET ROLE is
#   kept; a role gets no right it does not have (42501 as serially);
# - pg_cancel_backend of the caller mid-run: 57014, no worker left, each
#   tenant whole or untouched, and the rerun completes; pg_terminate_backend
#   of a worker fails its tenant alone (57P01), of the caller stops its
#   workers;
# - more workers asked for than can start: a NOTICE, and all applied;
# - a migration that must run outside a transaction: those tenants are
#   run by the caller after the workers, applied;
# - parallel=0, -1, x are refused (22023);
# - a parallel and a serial fan-out racing over the same tenants apply
#   each tenant once.

# w_par FOLDER FILE TEXT: as w in fixtures.sh.
w_par() {
	mkdir -p "$FX/$1"
	printf '%b' "$3" >"$FX/$1/$2"
}

make_parallel_fixtures() {
	FX=$1
	umask 022
	w_par par 1_a.up.sql "CREATE TABLE a (id int PRIMARY KEY, v text);\n"
	w_par par 2_who.up.sql "CREATE TABLE who AS SELECT current_user::text AS cu, session_user::text AS su;\n"
	w_par par 3_b.up.sql "-- fails where b exists already\nINSERT INTO a VALUES (1, 'x');\nCREATE TABLE b (id int);\n"
	w_par par_slow 1_a.up.sql "CREATE TABLE a (id int);\n"
	w_par par_slow 2_slow.up.sql "SELECT pg_catalog.pg_sleep(0.4);\nCREATE TABLE b (id int);\n"
	w_par par_out 1_a.up.sql "CREATE TABLE a (id int);\n"
	w_par par_out 2_idx.up.sql "CREATE INDEX CONCURRENTLY a_id ON a (id);\n"
}

# each_rows DB RESULTS: the rows of migrate_run_each's results (jsonb),
# tenant|applied|status|sqlstate, in order.
each_rows() {
	printf '%s\n' "SELECT tenant || '|' || applied || '|' || status || '|' || coalesce(sqlstate, '')
		FROM jsonb_to_recordset(:'res'::jsonb) AS r(tenant text, applied int, status text, sqlstate text);" |
		psql -X -q -At -d "$1" -v res="$2"
}

# par_tenants PREFIX N: '{PREFIX1,...,PREFIXN}'
par_tenants() {
	local s="" i
	for i in $(seq 1 "$2"); do s="$s${s:+,}$1$i"; done
	echo "{$s}"
}

parallel_suite() {
	local out res rows ser pid rc i
	newdb par
	q par -c "DO \$\$ BEGIN FOR i IN 1..20 LOOP
		EXECUTE format('CREATE SCHEMA s%s', i); EXECUTE format('CREATE SCHEMA p%s', i); END LOOP; END \$\$"

	# ---- the same as serial ----
	ser=$(q par -c "CALL migrate_run_each('$FX/par', '$(par_tenants s 20)')" 2>&1)
	out=$(qn par -c "CALL migrate_run_each('$FX/par', '$(par_tenants p 20)', 'parallel=2')" 2>&1)
	res=$(echo "$out" | grep -v '^NOTICE:')
	rows=$(each_rows par "$res")
	[ -n "$rows" ] && [ "$(echo "$rows" | sed 's/^p/x/')" = "$(each_rows par "$ser" | sed 's/^s/x/')" ]
	tap_show $? "parallel: parallel=2 over 20 tenants gives the rows of the serial fan-out" "$out
$ser"
	[ "$(echo "$out" | grep -c '^NOTICE:  tenant p[0-9]*: applied 3 migrations$')" = 20 ]
	tap_show $? "parallel: a progress NOTICE per tenant, worded as the serial fan-out's" "$out"
	check "parallel: the same histories as serially, once each" par \
		"SELECT (SELECT array_agg(x ORDER BY x) FROM (SELECT substr(tenant, 2) || ':' || version || ':' || checksum x
		         FROM migrate_history WHERE tenant ~ '^p[0-9]+$') h)
		      = (SELECT array_agg(x ORDER BY x) FROM (SELECT substr(tenant, 2) || ':' || version || ':' || checksum x
		         FROM migrate_history WHERE tenant ~ '^s[0-9]+$') h)
		 AND (SELECT count(*) FROM migrate_history WHERE tenant ~ '^p') = 60"
	check "parallel: the same schemas as serially (tables, columns, types)" par \
		"SELECT (SELECT array_agg(x ORDER BY x) FROM (SELECT substr(table_schema, 2) || '.' || table_name || '.' || column_name || ':' || data_type x
		         FROM information_schema.columns WHERE table_schema ~ '^p[0-9]+$') c)
		      = (SELECT array_agg(x ORDER BY x) FROM (SELECT substr(table_schema, 2) || '.' || table_name || '.' || column_name || ':' || data_type x
		         FROM information_schema.columns WHERE table_schema ~ '^s[0-9]+$') c)
		 AND (SELECT count(*) FROM information_schema.columns WHERE table_schema ~ '^p[0-9]+$') = 100
		 AND (SELECT count(*) FROM information_schema.tables WHERE table_schema ~ '^p[0-9]+$') = 60"
	check "parallel: two background workers migrated the tenants, not the caller (migrate_calls.backend_pid)" par \
		"SELECT count(DISTINCT backend_pid) = 2 FROM migrate_calls WHERE tenant ~ '^p' AND function = 'migrate_run_each'"
	check "parallel: the workers are gone after the call" par \
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'migrate parallel worker'"
	out=$(q par -c "CALL migrate_run_each('$FX/par', '$(par_tenants p 20)', 'parallel=2')" 2>&1)
	[ "$(each_rows par "$out" | grep -c '|0|up_to_date|$')" = 20 ]
	tap_show $? "parallel: a rerun finds every tenant up to date" "$out"

	# ---- failures ----
	q par -c "DO \$\$ BEGIN FOR i IN 1..8 LOOP EXECUTE format('CREATE SCHEMA f%s', i); END LOOP; END \$\$" \
		-c "CREATE TABLE f3.b (id int)" -c "CREATE TABLE f5.b (id int)"
	out=$(qn par -c "CALL migrate_run_each('$FX/par', '{f1,f2,f3,f4}', 'parallel=2, on_error=continue')" 2>&1)
	rows=$(each_rows par "$(echo "$out" | grep -v '^NOTICE:')")
	[ "$rows" = "$(printf 'f1|3|applied|\nf2|3|applied|\nf3|0|failed|42P07\nf4|3|applied|')" ] &&
		echo "$out" | grep -q '^NOTICE:  tenant f3: failed: relation "b" already exists$'
	tap_show $? "parallel: on_error=continue: a failing tenant fails alone, with its SQLSTATE and NOTICE" "$out"
	printf '%s\n' "SELECT error ~ '3_b.up.sql' AND error ~ 'line 3' FROM jsonb_to_recordset(:'res'::jsonb)
		AS r(tenant text, error text) WHERE tenant = 'f3';" >"$PG_TMP/par_err.sql"
	res=$(q par -c "CALL migrate_run_each('$FX/par', '{f3}', 'parallel=2')" 2>&1)
	out=$(psql -X -q -At -d par -v res="$res" -f "$PG_TMP/par_err.sql" 2>&1)
	tap_show $([ "$out" = t ]; echo $?) "parallel: the failed tenant's error names the file and the line" "$out"
	check "parallel: the failed tenant was rolled back whole" par \
		"SELECT NOT EXISTS (SELECT FROM migrate_history WHERE tenant = 'f3') AND to_regclass('f3.a') IS NULL"
	check "parallel: its failed call is in migrate_calls, written by the worker" par \
		"SELECT count(*) = 2 AND bool_and(sqlstate = '42P07') FROM migrate_calls WHERE tenant = 'f3' AND outcome = 'error'"
	out=$(q par -c "CALL migrate_run_each('$FX/par', '{f5,f6,f7,f8}', 'parallel=2, canary=1')" 2>&1)
	rows=$(each_rows par "$out")
	# the caller runs the canary as the serial fan-out does: a commit after
	# each migration (2 applied before the third failed)
	[ "$rows" = "$(printf 'f5|2|failed|42P07\nf6|0|not_reached|\nf7|0|not_reached|\nf8|0|not_reached|')" ]
	tap_show $? "parallel: canary=1 runs first, in the caller: its failure stops the rest" "$out"
	check "parallel: and they are untouched" par \
		"SELECT NOT EXISTS (SELECT FROM migrate_history WHERE tenant IN ('f6','f7','f8'))"
	q par -c "DROP TABLE f5.b" -c "CREATE TABLE f6.b (id int)"
	out=$(q par -c "CALL migrate_run_each('$FX/par', '{f5,f6,f7,f8}', 'parallel=2')" 2>&1)
	rows=$(each_rows par "$out")
	# f6 fails; on_error=stop: the tenants no worker took yet are not reached
	echo "$rows" | grep -q '^f5|1|applied|$' && echo "$rows" | grep -q '^f6|0|failed|42P07$' &&
		[ "$(echo "$rows" | grep -c '|not_reached|')" -le 2 ] &&
		[ "$(echo "$rows" | grep -vc '|applied|\||not_reached|\||failed|')" = 0 ]
	tap_show $? "parallel: on_error=stop: a failure stops the workers taking more" "$out"
	check "parallel: each of them applied whole or untouched" par \
		"SELECT bool_and(n IN (0, 3)) FROM (SELECT t, (SELECT count(*) FROM migrate_history WHERE tenant = t) n
		   FROM unnest('{f5,f6,f7,f8}'::text[]) t) x"

	# ---- who runs ----
	q par -c "CREATE ROLE par_user LOGIN" -c "GRANT pg_read_server_files TO par_user" \
		-c "GRANT EXECUTE ON PROCEDURE migrate_run_each(text, text[], text, jsonb) TO par_user" \
		-c "CREATE SCHEMA u1 AUTHORIZATION par_user" -c "CREATE SCHEMA u2 AUTHORIZATION par_user" \
		-c "CREATE SCHEMA u3" -c "CREATE SCHEMA u4 AUTHORIZATION par_user" -c "GRANT USAGE ON SCHEMA u3 TO par_user"
	out=$(q par -U par_user -c "CALL migrate_run_each('$FX/par', '{u1,u2,u3}', 'parallel=2, on_error=continue')" 2>&1)
	rows=$(each_rows par "$out")
	[ "$rows" = "$(printf 'u1|3|applied|\nu2|3|applied|\nu3|0|failed|42501')" ]
	tap_show $? "parallel: a non-superuser caller migrates its schemas, and gets 42501 where serially it would" "$out"
	check "parallel: its tables are its own" par \
		"SELECT array_agg(DISTINCT tableowner) = '{par_user}' FROM pg_tables WHERE schemaname IN ('u1', 'u2')"
	check "parallel: current_user and session_user in a migration are the caller's" par \
		"SELECT (SELECT cu || '/' || su FROM u1.who) = 'par_user/par_user' AND (SELECT cu || '/' || su FROM u2.who) = 'par_user/par_user'"
	check "parallel: nothing of u3 was written" par \
		"SELECT to_regclass('u3.a') IS NULL AND NOT EXISTS (SELECT FROM migrate_history WHERE tenant = 'u3')"
	q par -c "SET ROLE par_user" -c "CALL migrate_run_each('$FX/par', '{u4}', 'parallel=2')" >/dev/null 2>&1
	check "parallel: SET ROLE is kept in the worker (current_user the role, session_user the login)" par \
		"SELECT (SELECT cu || '/' || su FROM u4.who) = 'par_user/' || session_user
		 AND (SELECT tableowner FROM pg_tables WHERE schemaname = 'u4' AND tablename = 'a') = 'par_user'"

	# ---- cancel ----
	q par -c "DO \$\$ BEGIN FOR i IN 1..12 LOOP EXECUTE format('CREATE SCHEMA c%s', i); END LOOP; END \$\$"
	psql -X -q -At -v VERBOSITY=verbose -d par -c "SET application_name = par_cancel" \
		-c "CALL migrate_run_each('$FX/par_slow', '$(par_tenants c 12)', 'parallel=2')" >"$PG_TMP/par_cancel.out" 2>&1 &
	pid=$!
	sleep 1.5
	q par -c "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'par_cancel'" >/dev/null
	wait $pid
	grep -q "ERROR:  57014:" "$PG_TMP/par_cancel.out"
	tap_show $? "parallel: pg_cancel_backend of the caller ends the call with 57014" "$(cat "$PG_TMP/par_cancel.out")"
	check "parallel: no worker is left once the cancelled call returned" par \
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'migrate parallel worker'"
	check "parallel: after the cancel each tenant is whole or untouched, some done, some not" par \
		"SELECT bool_and((n = 2) = (to_regclass(t || '.b') IS NOT NULL) AND (n = 0) = (to_regclass(t || '.a') IS NULL)
		            AND n IN (0, 2))
		   AND count(*) FILTER (WHERE n = 2) BETWEEN 1 AND 11
		 FROM (SELECT t, (SELECT count(*) FROM migrate_history WHERE tenant = t) n
		       FROM unnest('$(par_tenants c 12)'::text[]) t) x"
	out=$(q par -c "CALL migrate_run_each('$FX/par_slow', '$(par_tenants c 12)', 'parallel=2')" 2>&1)
	[ "$(each_rows par "$out" | grep -c '|applied|\||up_to_date|')" = 12 ]
	tap_show $? "parallel: the rerun completes what the cancel left" "$out"
	check "parallel: every tenant has its two migrations, once" par \
		"SELECT count(*) = 24 AND count(DISTINCT (tenant, version)) = 24 FROM migrate_history WHERE tenant ~ '^c[0-9]+$'"

	# ---- pg_terminate_backend: of a worker, of the caller ----
	q par -c "DO \$\$ BEGIN FOR i IN 1..12 LOOP EXECUTE format('CREATE SCHEMA k%s', i); END LOOP; END \$\$"
	q par -c "CALL migrate_run_each('$FX/par_slow', '$(par_tenants k 12)', 'parallel=2, on_error=continue')" \
		>"$PG_TMP/par_kw.out" 2>&1 &
	pid=$!
	sleep 1.5
	q par -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE backend_type = 'migrate parallel worker' LIMIT 1" >/dev/null
	wait $pid
	rows=$(each_rows par "$(cat "$PG_TMP/par_kw.out")")
	[ "$(echo "$rows" | grep -c '|2|applied|$')" -ge 11 ] &&
		[ "$(echo "$rows" | grep -vc '|2|applied|$\||0|failed|57P01$')" = 0 ]
	tap_show $? "parallel: a terminated worker fails its tenant (57P01); the other worker does the rest" \
		"$(cat "$PG_TMP/par_kw.out")"
	q par -c "DO \$\$ BEGIN FOR i IN 1..12 LOOP EXECUTE format('CREATE SCHEMA kc%s', i); END LOOP; END \$\$"
	psql -X -q -At -d par -c "SET application_name = par_kill" \
		-c "CALL migrate_run_each('$FX/par_slow', '$(par_tenants kc 12)', 'parallel=2')" >/dev/null 2>&1 &
	pid=$!
	sleep 1.5
	q par -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'par_kill'" >/dev/null
	wait $pid
	for i in 1 2 3 4 5 6 7 8 9 10; do
		[ "$(q par -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'migrate parallel worker'")" = 0 ] && break
		sleep 0.2
	done
	check "parallel: pg_terminate_backend of the caller stops its workers" par \
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'migrate parallel worker'"
	check "parallel: and each tenant is whole or untouched" par \
		"SELECT bool_and((n = 2) = (to_regclass(t || '.b') IS NOT NULL) AND (n = 0) = (to_regclass(t || '.a') IS NULL)
		            AND n IN (0, 2)) AND count(*) FILTER (WHERE n = 2) < 12
		 FROM (SELECT t, (SELECT count(*) FROM migrate_history WHERE tenant = t) n
		       FROM unnest('$(par_tenants kc 12)'::text[]) t) x"
	out=$(q par -c "CALL migrate_run_each('$FX/par_slow', '{$(seq -s, -f 'k%.0f' 1 12),$(seq -s, -f 'kc%.0f' 1 12)}', 'parallel=2')" 2>&1)
	[ "$(each_rows par "$out" | grep -c '|applied|\||up_to_date|')" = 24 ]
	tap_show $? "parallel: the rerun completes both" "$out"

	# ---- more workers than can start ----
	q par -c "DO \$\$ BEGIN FOR i IN 1..40 LOOP EXECUTE format('CREATE SCHEMA m%s', i); END LOOP; END \$\$"
	out=$(qn par -c "CALL migrate_run_each('$FX/par', '$(par_tenants m 40)', 'parallel=100')" 2>&1)
	echo "$out" | grep -q '^NOTICE:  started [0-9]* of the 40 background workers asked for$' &&
		[ "$(each_rows par "$(echo "$out" | grep '^\[')" | grep -c '|3|applied|$')" = 40 ]
	tap_show $? "parallel: more workers asked for than can start: a NOTICE, and every tenant applied" "$out"

	# ---- outside a transaction ----
	q par -c "CREATE SCHEMA o1" -c "CREATE SCHEMA o2" -c "CREATE SCHEMA o3"
	out=$(q par -c "CALL migrate_run_each('$FX/par_out', '{o1,o2,o3}', 'parallel=2')" 2>&1)
	[ "$(each_rows par "$out")" = "$(printf 'o1|2|applied|\no2|2|applied|\no3|2|applied|')" ]
	tap_show $? "parallel: tenants with a migration outside a transaction are run by the caller, applied" "$out"
	check "parallel: their concurrent indexes are built and valid" par \
		"SELECT count(*) = 3 AND bool_and(indisvalid) FROM pg_index WHERE indexrelid::regclass::text ~ '^o[123]\.a_id$'"

	# ---- the folder as data ----
	q par -c "CREATE SCHEMA j1" -c "CREATE SCHEMA j2" -c "CREATE SCHEMA j3"
	out=$(q par -c "CALL migrate_run_each('{\"1_j.up.sql\": \"CREATE TABLE j (id int);\", \"2_k.up.sql\": \"CREATE TABLE k (id int);\"}'::jsonb,
		'{j1,j2,j3}', 'parallel=2')" 2>&1)
	[ "$(each_rows par "$out")" = "$(printf 'j1|2|applied|\nj2|2|applied|\nj3|2|applied|')" ]
	tap_show $? "parallel: the folder as a JSON object, in the workers" "$out"

	# ---- options ----
	for i in 0 -1 x; do
		fails_with "parallel: parallel=$i is refused (22023)" par 22023 \
			"CALL migrate_run_each('$FX/par', '{p1}', 'parallel=$i')"
	done

	# ---- two fan-outs race ----
	q par -c "DO \$\$ BEGIN FOR i IN 1..20 LOOP EXECUTE format('CREATE SCHEMA r%s', i); END LOOP; END \$\$"
	q par -c "CALL migrate_run_each('$FX/par_slow', '$(par_tenants r 20)', 'parallel=2')" >"$PG_TMP/par_race1.out" 2>&1 &
	pid=$!
	q par -c "CALL migrate_run_each('$FX/par_slow', '$(par_tenants r 20)')" >"$PG_TMP/par_race2.out" 2>&1
	rc=$?
	wait $pid
	[ $rc = 0 ] && [ "$(each_rows par "$(cat "$PG_TMP/par_race1.out")" | grep -c '|applied|\||up_to_date|')" = 20 ]
	tap_show $? "parallel: a parallel and a serial fan-out over the same tenants both complete" \
		"$(cat "$PG_TMP/par_race1.out" "$PG_TMP/par_race2.out")"
	check "parallel: each tenant's migrations applied exactly once" par \
		"SELECT count(*) = 40 AND count(DISTINCT (tenant, version)) = 40 FROM migrate_history WHERE tenant ~ '^r[0-9]+$'"
}
