# tests/pg/data_forms.sh -- the folder sent as data (a bytea archive or a
# jsonb object), sourced by tests/pg/run.sh inside its cluster (which also
# listens on 127.0.0.1), with its helpers (q, qn, check, fails_with, newdb,
# tap, tap_show).
#
# The client is another operating-system user ("daemon" when this runs as
# root) over TCP: its folder is readable by it alone, so the server could
# not read it even by path, and it reads nothing of the server's.  It
# connects as the database's owner, a role with no grant of its own, and
# uses nothing but psql, tar and base64 -- then Python's psycopg2 and
# psql's \lo_import.  Then: a role without rights (42501), the same history
# from a path and from an archive, CALL migrate_run with a migration
# outside a transaction resumed from a corrected archive, the call log's
# sha256, and every bad archive and JSON input with its SQLSTATE and the
# database unchanged.

CLIENT=$(id -un)
[ "$(id -u)" = 0 ] && CLIENT=daemon
DATA=$(mktemp -d /tmp/migrate-client.XXXXXX)
mkdir -p "$DATA/db/migrations/postgres" "$DATA/db/migrations/sqlite"
# asclient CMD...: CMD as the client's operating-system user
asclient() {
	if [ "$(id -u)" = 0 ]; then
		runuser -u "$CLIENT" -- env HOME="$DATA" "$@"
	else
		"$@"
	fi
}
# dw FILE TEXT: a migration file of the client's folder
dw() {
	mkdir -p "$(dirname "$DATA/db/migrations/$1")"
	printf '%b' "$2" >"$DATA/db/migrations/$1"
}
dw postgres/000001_users.up.sql "CREATE TABLE users (id int PRIMARY KEY, name text);\r\n"
dw postgres/000001_users.down.sql "DROP TABLE users;\n"
dw postgres/000002_email.up.sql "\xef\xbb\xbfALTER TABLE users ADD COLUMN email text; -- caf\xc3\xa9\n"
dw postgres/000002_email.down.sql "ALTER TABLE users DROP COLUMN email;\n"
dw postgres/000003_seed.up.sql "INSERT INTO users VALUES (1, 'a', 'a@example.org');\n"
dw postgres/000003_seed.down.sql "DELETE FROM users WHERE id = 1;\n"
dw sqlite/000001_users.up.sql "CREATE TABLE users(id INTEGER PRIMARY KEY);\n"
dw README.md "# the application's migrations\n"
chmod -R go-rwx "$DATA"
[ "$(id -u)" = 0 ] && chown -R "$CLIENT" "$DATA"

# remote ROLE DB [psql args]: psql as the client, over TCP to 127.0.0.1
remote() {
	local role=$1 db=$2
	shift 2
	asclient psql -X -q -At -v ON_ERROR_STOP=1 -v VERBOSITY=verbose \
		"host=127.0.0.1 port=$PGPORT user=$role dbname=$db" "$@"
}

q postgres -c "CREATE ROLE app_owner LOGIN" -c "CREATE ROLE stranger LOGIN" \
	-c "CREATE DATABASE appdb OWNER app_owner" >/dev/null
q appdb -c "CREATE EXTENSION migrate" >/dev/null
check "data: the database's owner holds no grant of its own" appdb \
	"SELECT NOT EXISTS (SELECT FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = 'app_owner')
	    AND NOT (SELECT rolsuper FROM pg_roles WHERE rolname = 'app_owner')
	    AND NOT has_function_privilege('app_owner', 'migrate_apply(text)', 'EXECUTE')"

# the README's psql recipe, word for word but the names
out=$(remote app_owner appdb 2>&1 <<EOF
\\set archive \`tar czf - -C $DATA/db/migrations . | base64 -w0\`
SELECT migrate_apply(decode(:'archive', 'base64'));
SELECT string_agg(version || ':' || state, ' ' ORDER BY version) FROM migrate_status(decode(:'archive', 'base64'));
SELECT migrate_apply(decode(:'archive', 'base64'));
EOF
)
[ "$out" = "$(printf '3\n1:applied 2:applied 3:applied\n0')" ]
tap_show $? "data: the database's owner applies its folder from another OS user over TCP (psql, tar, base64)" "$out"
check "data: as the owner, with the history written by the functions" appdb \
	"SELECT array_agg(applied_by || ' ' || down_by ORDER BY version) = '{\"app_owner app_owner\",\"app_owner app_owner\",\"app_owner app_owner\"}'
	   AND (SELECT count(*) FROM users) = 1 AND (SELECT tableowner FROM pg_tables WHERE tablename = 'users') = 'app_owner'
	   FROM migrate_history"
out=$(remote app_owner appdb -c "SELECT migrate_apply('$DATA/db/migrations')" 2>&1)
echo "$out" | grep -q "ERROR:  42501: permission denied for function migrate_apply"
tap_show $? "data: the path form is still not the owner's (42501)" "$out"
out=$(q appdb -c "SELECT migrate_apply('$DATA/db/migrations')" 2>&1)
echo "$out" | grep -q 'could not open directory ".*": Permission denied'
tap_show $? "data: and the server could not read the client's folder anyway" "$out"

out=$(remote app_owner appdb 2>&1 <<EOF
\\set archive \`tar czf - -C $DATA/db/migrations . | base64 -w0\`
SELECT count(*) FROM migrate_validate(decode(:'archive', 'base64'));
SELECT count(*) FROM migrate_plan(decode(:'archive', 'base64'));
SELECT length(migrate_script(decode(:'archive', 'base64'))) > 0;
SELECT count(*) FROM migrate_lock_holder();
SELECT migrate_down(1);
SELECT migrate_down_to('1');
SELECT count(*) FROM migrate_history;
SELECT migrate_apply(decode(:'archive', 'base64'), 'target=2');
CALL migrate_run_down(1);
SELECT migrate_apply(decode(:'archive', 'base64'));
SELECT outcome FROM migrate_calls ORDER BY id DESC LIMIT 1;
EOF
)
[ "$out" = "$(printf '0\n0\nt\n0\n1\n1\n1\n1\n2\nok')" ]
tap_show $? "data: the owner inspects (validate, plan, script, lock holder, history, call log) and rolls back, no other grant" "$out"

out=$(remote stranger appdb 2>&1 <<EOF
\\set archive \`tar czf - -C $DATA/db/migrations . | base64 -w0\`
SELECT migrate_apply(decode(:'archive', 'base64'));
EOF
)
echo "$out" | grep -q "ERROR:  42501: permission denied for function migrate_apply"
tap_show $? "data: a role without rights is refused (42501)" "$out"
out=$(remote stranger appdb -c "SELECT * FROM migrate_status('{}'::jsonb)" 2>&1)
echo "$out" | grep -q "ERROR:  42501: permission denied for function migrate_status"
tap_show $? "data: also to look (42501)" "$out"
q appdb -c "GRANT EXECUTE ON FUNCTION migrate_status(bytea) TO stranger" >/dev/null
out=$(remote stranger appdb 2>&1 <<EOF
\\set archive \`tar czf - -C $DATA/db/migrations . | base64 -w0\`
SELECT string_agg(version || ':' || state, ' ' ORDER BY version) FROM migrate_status(decode(:'archive', 'base64'));
EOF
)
[ "$out" = "1:applied 2:applied 3:applied" ]
tap_show $? "data: a grant of the README's recipe is all another role needs" "$out"

# the owner's other writes from an archive: baseline, repair after an
# edit, adopt another tool's table, record a migration run elsewhere
mkdir -p "$DATA/edited"
cp -a "$DATA/db/migrations/." "$DATA/edited/"
printf "INSERT INTO users VALUES (1, 'a', 'a@example.org') ON CONFLICT DO NOTHING;\n" \
	>"$DATA/edited/postgres/000003_seed.up.sql"
[ "$(id -u)" = 0 ] && chown -R "$CLIENT" "$DATA/edited"
for d in basedb adoptdb; do
	newdb $d
	q $d -c "ALTER DATABASE $d OWNER TO app_owner" >/dev/null
done
out=$(remote app_owner basedb 2>&1 <<EOF
\\set archive \`tar czf - -C $DATA/db/migrations . | base64 -w0\`
\\set edited \`tar czf - -C $DATA/edited . | base64 -w0\`
CREATE TABLE users (id int PRIMARY KEY, name text);
SELECT migrate_baseline(decode(:'archive', 'base64'), '1');
SELECT migrate_apply(decode(:'archive', 'base64'));
SELECT string_agg(version || ':' || state, ' ' ORDER BY version) FROM migrate_status(decode(:'edited', 'base64'));
SELECT migrate_repair(decode(:'edited', 'base64'));
SELECT string_agg(version || ':' || state, ' ' ORDER BY version) FROM migrate_status(decode(:'edited', 'base64'));
SELECT string_agg(version || ':' || action || ':' || repaired_by, ' ') FROM migrate_repairs;
EOF
)
[ "$out" = "$(printf '1\n2\n1:applied 2:applied 3:changed\n1\n1:applied 2:applied 3:applied\n3:repair:app_owner')" ]
tap_show $? "data: as the owner, migrate_baseline and migrate_repair take the archive (repair audited)" "$out"
out=$(remote app_owner adoptdb 2>&1 <<EOF
\\set archive \`tar czf - -C $DATA/db/migrations . | base64 -w0\`
CREATE TABLE users (id int PRIMARY KEY, name text, email text);
CREATE TABLE schema_migrations (version bigint NOT NULL PRIMARY KEY, dirty boolean NOT NULL);
INSERT INTO schema_migrations VALUES (2, false);
SELECT migrate_adopt(decode(:'archive', 'base64'));
SELECT migrate_record(decode(:'archive', 'base64'), '3');
SELECT string_agg(version || ':' || state, ' ' ORDER BY version) FROM migrate_status(decode(:'archive', 'base64'));
SELECT string_agg(version || ':' || action || ':' || repaired_by, ' ') FROM migrate_repairs;
SELECT count(*) FROM users;
EOF
)
[ "$out" = "$(printf '2\n1\n1:applied 2:applied 3:applied\n3:record:app_owner\n0')" ]
tap_show $? "data: as the owner, migrate_adopt and migrate_record take the archive (record audited, nothing run)" "$out"

# psycopg2, the archive as a parameter
newdb pydb
q pydb -c "ALTER DATABASE pydb OWNER TO app_owner" >/dev/null
out=$(asclient /usr/bin/python3 - "$PGPORT" "$DATA/db/migrations" 2>&1 <<'EOF'
import io, sys, tarfile
import psycopg2
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w:gz") as t:
    t.add(sys.argv[2], arcname=".")
con = psycopg2.connect(host="127.0.0.1", port=sys.argv[1], user="app_owner", dbname="pydb")
con.autocommit = True
cur = con.cursor()
cur.execute("SET client_min_messages = notice")
cur.execute("SELECT migrate_apply(%s)", (psycopg2.Binary(buf.getvalue()),))
print(cur.fetchone()[0])
cur.execute("CALL migrate_run(%s)", (psycopg2.Binary(buf.getvalue()),))
print(con.notices[-1].strip())
EOF
)
[ "$out" = "$(printf '3\nNOTICE:  applied 0 migrations')" ]
tap_show $? "data: Python's psycopg2 sends the archive as a parameter, as the owner" "$out"

# psql's \lo_import: the file goes over the connection, then lo_get
newdb lodb
q lodb -c "ALTER DATABASE lodb OWNER TO app_owner" >/dev/null
asclient sh -c "tar czf '$DATA/m.tar.gz' -C '$DATA/db/migrations' ."
out=$(remote app_owner lodb 2>&1 <<EOF
\\lo_import $DATA/m.tar.gz
SELECT migrate_apply(lo_get(:LASTOID));
SELECT lo_unlink(:LASTOID);
EOF
)
[ "$(echo "$out" | head -n 1)" = 3 ]
tap_show $? "data: psql's \\lo_import, then lo_get" "$out"
check "data: the call log names the archive by the sha256 of its bytes" lodb \
	"SELECT source = 'archive sha256:$(sha256sum <"$DATA/m.tar.gz" | cut -d' ' -f1) (tar.gz, 8 files)' AND role = 'app_owner'
	   FROM migrate_calls ORDER BY id DESC LIMIT 1"

# jsonb
newdb jsondb
out=$(q jsondb -c "SELECT migrate_apply('{\"postgres/1_a.up.sql\": \"CREATE TABLE ja (x int);\", \"postgres/1_a.down.sql\": \"DROP TABLE ja;\"}'::jsonb)" 2>&1)
[ "$out" = 1 ]
tap_show $? "data: a jsonb object of file names and texts" "$out"
out=$(q jsondb -c "SELECT migrate_apply(jsonb_build_object('postgres/1_a.up.sql', 'CREATE TABLE ja (x int);', 'postgres/1_a.down.sql', 'DROP TABLE ja;', 'postgres/2_b.up.sql', 'CREATE TABLE jb (x int);'))" -c "SELECT migrate_down(2)" 2>&1)
[ "$out" = "$(printf '1\n2')" ]
tap_show $? "data: jsonb_build_object, then rolled back from the stored downs" "$out"

# the same history from a path and from an archive; switching is a no-op
newdb frompath
newdb fromarch
q frompath -c "SELECT migrate_apply('$FX/basic')" >/dev/null
B64=$(tar czf - -C "$FX/basic" . | base64 -w0)
q fromarch -v a="$B64" <<<"SELECT migrate_apply(decode(:'a', 'base64'))" >/dev/null
HIST="SELECT version, name, up_file, down_file, checksum, checksum_norm, up_sql, down_sql, down_mode FROM migrate_history ORDER BY version"
[ "$(q frompath -c "$HIST")" = "$(q fromarch -c "$HIST")" ] && [ -n "$(q frompath -c "$HIST")" ]
tap $? "data: a folder applied from a path and as an archive: identical history and checksums"
out=$(q frompath -v a="$B64" <<<"SELECT migrate_apply(decode(:'a', 'base64'))")$(q fromarch -c "SELECT migrate_apply('$FX/basic')")
[ "$out" = 00 ]
tap_show $? "data: switching sources on one database applies nothing, both ways" "$out"
check "data: and repairs nothing" frompath "SELECT count(*) = 0 FROM migrate_repairs"

# CALL migrate_run: a migration outside a transaction from the archive,
# resumed after a failure from a corrected archive
newdb runarch
q runarch -c "ALTER DATABASE runarch OWNER TO app_owner" -c "ALTER SCHEMA public OWNER TO app_owner" >/dev/null
RUN=$DATA/run
mkdir -p "$RUN"
printf -- '-- +goose Up\nCREATE TABLE ra (x int);\nINSERT INTO ra SELECT g FROM generate_series(1, 1000) g;\n' >"$RUN/1_ra.sql"
printf -- '-- +goose NO TRANSACTION\n-- +goose Up\nCREATE INDEX CONCURRENTLY ra_x ON ra (x);\nINSERT INTO nope VALUES (1);\nCREATE INDEX CONCURRENTLY ra_x2 ON ra (x);\n' >"$RUN/2_idx.sql"
[ "$(id -u)" = 0 ] && chown -R "$CLIENT" "$RUN"
out=$(PGOPTIONS="-c client_min_messages=notice" remote app_owner runarch 2>&1 <<EOF
\\set archive \`tar czf - -C $RUN . | base64 -w0\`
CALL migrate_run(decode(:'archive', 'base64'));
EOF
)
echo "$out" | grep -q 'ERROR:  42P01: relation "nope" does not exist' &&
	echo "$out" | grep -q "migration 2 (2_idx.sql), line 4"
tap_show $? "data: CALL migrate_run from an archive runs a marked migration outside a transaction, failing at its line" "$out"
printf -- '-- +goose NO TRANSACTION\n-- +goose Up\nCREATE INDEX CONCURRENTLY ra_x ON ra (x);\nCREATE TABLE nope (x int);\nCREATE INDEX CONCURRENTLY ra_x2 ON ra (x);\n' >"$RUN/2_idx.sql"
out=$(PGOPTIONS="-c client_min_messages=notice" remote app_owner runarch 2>&1 <<EOF
\\set archive \`tar czf - -C $RUN . | base64 -w0\`
CALL migrate_run(decode(:'archive', 'base64'));
EOF
)
echo "$out" | grep -q "resuming migration 2 (2_idx.sql) after its 1 statement done" &&
	echo "$out" | grep -q "NOTICE:  .*applied 1 migration$"
tap_show $? "data: and resumes after the statement done, from the corrected archive" "$out"
check "data: both indexes built, the history complete" runarch \
	"SELECT (SELECT count(*) FROM pg_indexes WHERE tablename = 'ra') = 2 AND count(*) = 2
	    AND NOT EXISTS (SELECT FROM migrate_progress) FROM migrate_history"

# ---- bad input: a clear error with its SQLSTATE, nothing applied ----
newdb baddata
q baddata -c "CREATE TABLE keep (x int)" -c "INSERT INTO keep VALUES (1)" >/dev/null
BAD=$PG_TMP/baddata
mkdir -p "$BAD"
/usr/bin/python3 - "$BAD" <<'EOF'
import io, sys, tarfile
out = sys.argv[1]
def tar(name, entries, fmt=tarfile.PAX_FORMAT, mode="w:gz"):
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode=mode, format=fmt, encoding="utf-8", errors="surrogateescape") as t:
        for e in entries:
            if isinstance(e, tarfile.TarInfo):
                t.addfile(e)
                continue
            i = tarfile.TarInfo(e[0]); data = e[1] if isinstance(e[1], bytes) else e[1].encode()
            i.size = len(data); t.addfile(i, io.BytesIO(data))
    open("%s/%s" % (out, name), "wb").write(b.getvalue())
def special(name, kind, target=""):
    i = tarfile.TarInfo(name); i.type = kind; i.linkname = target; return i
good = ("1_probe.up.sql", "SELECT pg_catalog.nextval('public.probe');\n")
tar("symlink", [good, special("2_evil.up.sql", tarfile.SYMTYPE, "/etc/passwd")])
tar("hardlink", [good, special("2_again.up.sql", tarfile.LNKTYPE, "1_probe.up.sql")])
tar("device", [good, special("2_dev.up.sql", tarfile.BLKTYPE)])
tar("dotdot", [good, ("../2_evil.up.sql", "SELECT 1;")])
tar("absolute", [good, ("/2_evil.up.sql", "SELECT 1;")])
tar("duplicate", [good, ("2_b.up.sql", "SELECT 1;"), ("./2_b.up.sql", "SELECT 2;")])
tar("latin1", [good, ("2_caf\udce9.up.sql", "SELECT 1;")], fmt=tarfile.USTAR_FORMAT, mode="w")
tar("nofiles", [special("./", tarfile.DIRTYPE)])
tar("big", [good, ("2_big.up.sql", b"SELECT 1;\n" + b" " * 3000)])
tar("bomb", [good] + [("%d_x.up.sql" % v, b"SELECT 1;\n" + b" " * 600000) for v in (2, 3, 4)])
tar("badutf8", [good, ("2_b.up.sql", b"SELECT 'caf\xe9';\n")])
data = open("%s/symlink" % out, "rb").read()
open("%s/cut" % out, "wb").write(data[:len(data) // 2])
EOF
# bad NAME SQLSTATE MESSAGE EXPR [SETTING]: migrate_apply(EXPR) fails with
# SQLSTATE and MESSAGE, nothing applied (the probe sequence and the history
# untouched), the call logged
bad() {
	local out
	out=$(psql -X -q -At -v VERBOSITY=verbose -d baddata 2>&1 <<EOF
${5:-}
SELECT migrate_apply($4);
SELECT 'state=' || (SELECT last_value FROM probe) || (SELECT is_called FROM probe)
	|| (SELECT count(*) FROM migrate_history) || (SELECT count(*) FROM keep);
EOF
)
	echo "$out" | grep -qF "ERROR:  $2: $3" && echo "$out" | grep -q "^state=1false01$"
	tap_show $? "data: bad input: $1 ($2), nothing applied" "$out"
}
badfile() {	# badfile NAME: pg_read_binary_file of a bad archive
	echo "pg_read_binary_file('$BAD/$1')"
}
bad "not an archive" 22P03 "could not read the archive: Unrecognized archive format" "'\\x0102'::bytea"
bad "cut short" 22P03 "could not read the archive: " "$(badfile cut)"
bad "a symbolic link" 42501 'entry "2_evil.up.sql" of the archive is a symbolic link' "$(badfile symlink)"
bad "a hard link" 42501 'entry "2_again.up.sql" of the archive is a hard link' "$(badfile hardlink)"
bad "a device" 42501 'entry "2_dev.up.sql" of the archive is a device' "$(badfile device)"
bad "'..'" 42501 'entry "../2_evil.up.sql" of the archive leads out of the folder ("..")' "$(badfile dotdot)"
bad "an absolute name" 42501 'entry "/2_evil.up.sql" of the archive has an absolute path' "$(badfile absolute)"
bad "a duplicate entry" 42710 'entry "2_b.up.sql" appears more than once in the archive' "$(badfile duplicate)"
bad "a name that is not UTF-8" 22021 'entry name "2_caf\xe9.up.sql" of the archive is not valid UTF-8' "$(badfile latin1)"
bad "an empty archive" 22023 "the archive is empty" "''::bytea"
bad "an archive without files" 22023 "the archive holds no files" "$(badfile nofiles)"
bad "a file over migrate.max_file_size" 54000 'file "2_big.up.sql" of the archive is too large' \
	"$(badfile big)" "SET migrate.max_file_size = '2kB';"
bad "a bomb past migrate.max_archive_size" 54000 "the files of the archive are too large" \
	"$(badfile bomb)" "SET migrate.max_archive_size = '1MB';"
bad "a file that is not UTF-8, named with its line" 22021 \
	'migration file "2_b.up.sql" is not valid UTF-8' "$(badfile badutf8)"
bad "a JSON value that is not a string" 22023 'the JSON value of "2_b.up.sql" is not a string' \
	"'{\"1_probe.up.sql\": \"SELECT pg_catalog.nextval(''public.probe'');\", \"2_b.up.sql\": 42}'::jsonb"
bad "a nested JSON object" 22023 'the JSON value of "postgres" is not a string' \
	"'{\"1_probe.up.sql\": \"SELECT 1;\", \"postgres\": {\"2_b.up.sql\": \"SELECT 1;\"}}'::jsonb"
bad "a JSON array" 22023 "the migration folder given as JSON is not an object" "'[\"1_a.up.sql\"]'::jsonb"
bad "an empty JSON object" 22023 "the JSON object holds no files" "'{}'::jsonb"
bad "NULL" 22004 "migration folder data must not be NULL" "NULL::bytea"
check "data: bad input: each failed call is in the call log" baddata \
	"SELECT count(*) >= 17 AND bool_and(outcome = 'error') FROM migrate_calls"
check "data: a folder path still resolves to the text form" baddata \
	"SELECT migrate_apply('$FX/empty') = 0"

# bin/migrate against the server as a remote one: a URI, the owner's role
newdb clidb
q clidb -c "ALTER DATABASE clidb OWNER TO app_owner" >/dev/null
cp bin/migrate "$DATA/migrate"
[ "$(id -u)" = 0 ] && chown "$CLIENT" "$DATA/migrate"
URI="postgresql://app_owner@127.0.0.1:$PGPORT/clidb"
cli() {	# cli ARGS...: bin/migrate as the client, in its folder, on clidb
	asclient sh -c 'cd "$1" && shift && PGOPTIONS= exec sh ./migrate "$@"' sh "$DATA" --db "$URI" "$@"
}
out=$(cli plan 2>&1)
echo "$out" | grep -q "000003_seed.up.sql"
tap_show $? "migrate (bin/): plan of db/migrations, sent as data" "$out"
out=$(cli up --target 2 2>&1)
echo "$out" | grep -q "NOTICE:  applied 2 migrations"
tap_show $? "migrate (bin/): up --target 2 (CALL migrate_run)" "$out"
out=$(cli status 2>&1)
echo "$out" | grep -q " 3 .*| pending" && echo "$out" | grep -q " 2 .*| applied"
tap_show $? "migrate (bin/): status" "$out"
out=$(cli validate 2>&1)
[ "$out" = "no problems" ]
tap_show $? "migrate (bin/): validate" "$out"
out=$(cli script 2>&1)
echo "$out" | grep -q "INSERT INTO users VALUES (1, 'a', 'a@example.org');"
tap_show $? "migrate (bin/): script" "$out"
out=$(cli up 2>&1 && cli down 2 2>&1)
echo "$out" | grep -q "NOTICE:  applied 1 migration" && echo "$out" | grep -q "NOTICE:  rolled back 2 migrations"
tap_show $? "migrate (bin/): up, then down 2 (CALL migrate_run_down)" "$out"
check "migrate (bin/): the database is at version 1" clidb \
	"SELECT array_agg(version) = '{1}' FROM migrate_history"
out=$(cli new add_phone 2>&1)
[ "$out" = "$(printf 'db/migrations/postgres/000004_add_phone.up.sql\ndb/migrations/postgres/000004_add_phone.down.sql\ndb/migrations/sqlite/000002_add_phone.up.sql\ndb/migrations/sqlite/000002_add_phone.down.sql')" ]
tap_show $? "migrate (bin/): new writes the next files in each engine's folder" "$out"

rm -rf "$DATA"
