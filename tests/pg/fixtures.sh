# tests/pg/fixtures.sh -- writes the migration folders the PostgreSQL tests
# use (sourced by tests/pg/run.sh): make_fixtures DIR.
#
# Files are created 0644 and folders 0755 (umask 022) so that the server,
# running as another user, can read them and the engine does not refuse
# them as group/world-writable; the few unsafe ones are made so on purpose.

# w FOLDER FILE TEXT: writes TEXT (printf %b escapes) to FOLDER/FILE.
w() {
	mkdir -p "$FX/$1"
	printf '%b' "$3" >"$FX/$1/$2"
}

# probe FOLDER: the first migration of a bad folder; it moves a sequence,
# which rollback does not undo, so the tests see whether anything ran.
probe() {
	w "$1" 1_probe.up.sql "SELECT pg_catalog.nextval('public.probe');\n"
}

make_fixtures() {
	FX=$1
	local f
	umask 022
	mkdir -p "$FX"

	# basic: two migrations with downs, one without
	w basic 1_create_t1.up.sql "CREATE TABLE t1 (id int PRIMARY KEY);\nINSERT INTO t1 VALUES (1), (2);\n"
	w basic 1_create_t1.down.sql "DROP TABLE t1;\n"
	w basic 2_create_t2.up.sql "CREATE TABLE t2 (id int);\nINSERT INTO t2 VALUES (10), (20);\n"
	w basic 2_create_t2.down.sql "DROP TABLE t2;\n"
	w basic 3_seed.up.sql "-- no down script\nINSERT INTO t1 VALUES (3);\n"
	mkdir -p "$FX/empty"

	# numeric: versions compare as numbers
	mkdir -p "$FX/numeric" && cp -p "$FX"/basic/* "$FX/numeric/"
	for f in 9_nine 10_ten 000011_eleven; do
		w numeric "$f.up.sql" "CREATE TABLE n_${f#*_} (id int);\n"
		w numeric "$f.down.sql" "DROP TABLE n_${f#*_};\n"
	done

	# bad names and versions
	probe bad_name; w bad_name notes.sql "SELECT 1;\n"
	probe dup_version; w dup_version 2_a.up.sql "CREATE TABLE d1 (id int);\n"
	w dup_version 02_b.up.sql "CREATE TABLE d2 (id int);\n"
	probe down_only; w down_only 2_gone.down.sql "DROP TABLE x;\n"

	# unsafe files
	probe symlink; ln -s ../basic/1_create_t1.up.sql "$FX/symlink/2_link.up.sql"
	probe symlink_down; w symlink_down 2_a.up.sql "CREATE TABLE sd (id int);\n"
	ln -s ../basic/1_create_t1.down.sql "$FX/symlink_down/2_a.down.sql"
	probe fifo; mkfifo "$FX/fifo/2_fifo.up.sql"
	probe dir_sql; mkdir -p "$FX/dir_sql/2_dir.up.sql"
	probe group_writable; w group_writable 2_gw.up.sql "CREATE TABLE gw (id int);\n"
	chmod 664 "$FX/group_writable/2_gw.up.sql"
	probe world_writable; w world_writable 2_ww.up.sql "CREATE TABLE ww (id int);\n"
	chmod 646 "$FX/world_writable/2_ww.up.sql"
	probe over_setting; w over_setting 2_two_kb.up.sql "SELECT 1;\n$(printf -- '-- %.0s........................................................................\\n' $(seq 1 30))"
	probe oversized; w oversized 2_big.up.sql "SELECT 1;\n"
	truncate -s 65M "$FX/oversized/2_big.up.sql"

	# unsafe content
	probe nul_byte; w nul_byte 2_nul.up.sql "CREATE TABLE nul1 (id int);\0CREATE TABLE nul2 (id int);\n"
	probe bad_utf8; w bad_utf8 2_utf.up.sql "SELECT 'caf\xe9';\n"
	probe bad_utf8_down; w bad_utf8_down 2_a.up.sql "SELECT 1;\n"
	w bad_utf8_down 2_a.down.sql "SELECT '\xff\xfe';\n"
	w bom 1_bom.up.sql "\xef\xbb\xbfCREATE TABLE bom_t (id int);\n"

	# statements that cannot run through SPI inside a transaction
	probe txn_commit; w txn_commit 2_commit.up.sql "CREATE TABLE c1 (id int);\nCOMMIT;\n"
	probe txn_begin; w txn_begin 2_begin.up.sql "BEGIN;\nCREATE TABLE c2 (id int);\n"
	probe txn_rollback; w txn_rollback 2_rb.up.sql "CREATE TABLE c3 (id int);\nROLLBACK;\n"
	probe txn_savepoint; w txn_savepoint 2_sp.up.sql "SAVEPOINT a;\n"
	probe txn_down; w txn_down 2_a.up.sql "CREATE TABLE c4 (id int);\n"
	w txn_down 2_a.down.sql "DROP TABLE c4;\nCOMMIT;\n"
	probe vacuum; w vacuum 2_vacuum.up.sql "CREATE TABLE v1 (id int);\n-- tidy up\nVACUUM v1;\n"
	probe cic; w cic 2_cic.up.sql "CREATE TABLE i1 (id int);\nCREATE INDEX CONCURRENTLY i1_id ON i1 (id);\n"
	probe createdb; w createdb 2_db.up.sql "CREATE DATABASE migrate_never;\n"
	probe tablespace; w tablespace 2_ts.up.sql "CREATE TABLESPACE never LOCATION '/nonexistent';\n"
	probe copy_stdin; w copy_stdin 2_copy.up.sql "CREATE TABLE cp (id int);\nCOPY cp FROM STDIN;\n"
	probe syntax; w syntax 2_bad.up.sql "CREATE TABLE s1 (id int);\n\nCREAT TABLE s2 (id int);\n"

	# runtime errors and their lines
	w fail 1_ok.up.sql "CREATE TABLE f1 (id int);\n"
	w fail 2_fails.up.sql "CREATE TABLE f2 (id int);\n\n-- the next statement fails on its second line\nINSERT INTO f2\n  VALUES (1 / 0);\n"
	w crlf_fail 1_crlf.up.sql "CREATE TABLE cr (id int);\r\n\r\nSELECT 1 / 0;\r\n"
	w down_fails 1_df.up.sql "CREATE TABLE df (id int);\n"
	w down_fails 1_df.down.sql "DROP TABLE df;\nDROP TABLE no_such_table;\n"
	w unicode_syntax 1_u.up.sql "-- h\xc3\xa9llo w\xc3\xb6rld \xe2\x82\xac\xe2\x82\xac\nSELECT '\xc3\xa9\xc3\xa9\xc3\xa9';\nSELECT '\xe2\x82\xac'\n  , 1 +;\n"

	# applied history against edited folders (states_a is applied first)
	for f in states_a edited missing out_of_order states_b; do
		w $f 1_a.up.sql "CREATE TABLE sa1 (id int);\n"
	done
	for f in states_a missing out_of_order; do
		w $f 2_b.up.sql "CREATE TABLE sa2 (id int);\n"
	done
	w edited 2_b.up.sql "CREATE TABLE sa2 (id bigint);\n"
	w states_b 2_b.up.sql "CREATE TABLE sa2 (id bigint);\n"
	for f in states_a edited out_of_order; do
		w $f 4_d.up.sql "CREATE TABLE sa4 (id int);\n"
	done
	w edited 5_probe.up.sql "SELECT pg_catalog.nextval('public.probe');\n"
	w missing 5_probe.up.sql "SELECT pg_catalog.nextval('public.probe');\n"
	w out_of_order 3_probe.up.sql "SELECT pg_catalog.nextval('public.probe');\n"
	w states_b 3_c.up.sql "CREATE TABLE sa3 (id int);\n"
	w states_b 5_e.up.sql "CREATE TABLE sa5 (id int);\n"

	# procedure mode
	for f in 1 2 3; do
		w proc_ok "${f}_p$f.up.sql" "CREATE TABLE p$f (id int);\nINSERT INTO p$f VALUES ($f);\n"
	done
	mkdir -p "$FX/proc_fail" && cp -p "$FX"/proc_ok/* "$FX/proc_fail/"
	w proc_fail 4_p4.up.sql "CREATE TABLE p4 (id int);\nSELECT 1 / 0;\n"
	w proc_fail 5_p5.up.sql "CREATE TABLE p5 (id int);\n"
	# sleepy: migration 1 takes about 50 ms, migration 2 none
	w sleepy 1_nap.up.sql "SELECT pg_catalog.pg_sleep(0.05);\n"
	w sleepy 2_after.up.sql "CREATE TABLE after_nap (id int);\n"
	w slow 1_slow.up.sql "CREATE TABLE slow (id int);\nSELECT pg_catalog.pg_sleep(5);\n"
	w enum 1_type.up.sql "CREATE TYPE mood AS ENUM ('sad');\n"
	w enum 2_value.up.sql "ALTER TYPE mood ADD VALUE 'happy';\n"
	w enum 3_use.up.sql "CREATE TABLE m (x mood DEFAULT 'happy');\n"

	# other layouts: Flyway (with a repeatable), dbmate, goose, per-engine
	w flyway V1__create.sql "CREATE TABLE fw1 (id int);\n"
	w flyway V1.1__seed.sql "INSERT INTO fw1 VALUES (1);\n"
	w flyway R__view.sql "CREATE OR REPLACE VIEW fw_v AS SELECT count(*) AS n FROM fw1;\n"
	mkdir -p "$FX/flyway_changed" && cp -p "$FX"/flyway/V* "$FX/flyway_changed/"
	w flyway_changed R__view.sql "CREATE OR REPLACE VIEW fw_v AS SELECT count(*) AS n, 2 AS k FROM fw1;\n"
	w dbmate 20240101120000_create.sql "-- migrate:up\nCREATE TABLE dm1 (id int);\n\n-- migrate:down\nDROP TABLE dm1;\n"
	w dbmate_fail 20240101120000_bad.sql "-- migrate:up\nCREATE TABLE dm2 (id int);\nSELECT 1 / 0;\n-- migrate:down\nDROP TABLE dm2;\n"
	w goose 00001_create.sql "-- +goose Up\nCREATE TABLE gs1 (id int);\n-- +goose Down\nDROP TABLE gs1;\n"
	w goose 00002_more.sql "-- +goose Up\nCREATE TABLE gs2 (id int);\n-- +goose Down\nDROP TABLE gs2;\n"
	w goose_notx 00001_idx.sql "-- +goose NO TRANSACTION\n-- +goose Up\nCREATE TABLE gn (id int);\n"
	w engines/postgres 1_pg.up.sql "CREATE TABLE eng_pg (id int);\n"
	w engines/sqlite 1_lite.up.sql "CREATE TABLE eng_lite (id int);\n"
	w engines_other/sqlite 1_lite.up.sql "CREATE TABLE eng_lite (id int);\n"
	for f in 1_a 2_b 3_c; do
		w golang "$f.up.sql" "CREATE TABLE ga_${f#*_} (id int);\n"
		w golang "$f.down.sql" "DROP TABLE ga_${f#*_};\n"
	done

	# a LATIN1 database: UTF-8 files are converted to the server encoding
	w latin1 1_cafe.up.sql "CREATE TABLE cafe (n text);\nINSERT INTO cafe VALUES ('\xc3\xa9t\xc3\xa9');\n"
	mkdir -p "$FX/latin1_euro" "$FX/latin1_fail"
	cp -p "$FX/latin1/1_cafe.up.sql" "$FX/latin1_euro/"
	cp -p "$FX/latin1/1_cafe.up.sql" "$FX/latin1_fail/"
	w latin1_euro 2_euro.up.sql "SELECT 1;\n\nSELECT '\xe2\x82\xac';\n"
	w latin1_fail 2_f.up.sql "-- d\xc3\xa9j\xc3\xa0 vu\nSELECT '\xc3\xa9';\nSELECT 1 / 0;\n"

	# races, dump and restore, pg_cron
	for f in $(seq 1 20); do
		w race "${f}_r$f.up.sql" "CREATE TABLE r$f (id int PRIMARY KEY);\nINSERT INTO r$f SELECT g FROM generate_series(1, 100) g;\n"
		w race "${f}_r$f.down.sql" "DROP TABLE r$f;\n"
	done
	for f in 1 2 3; do
		w cron "${f}_c$f.up.sql" "CREATE TABLE c$f (id int);\n"
	done
	mkdir -p "$FX/basic_plus" && cp -p "$FX"/basic/* "$FX/basic_plus/"
	w basic_plus 4_more.up.sql "CREATE TABLE t4 (id int);\n"
	w basic_plus 4_more.down.sql "DROP TABLE t4;\n"

	layout_fixtures
	adopt_fixtures
	encoding_fixtures
	operator_fixtures
	attack_fixtures
	order_fixtures
}

# wq FOLDER FILE <<'EOS': writes the here-document to FOLDER/FILE verbatim
# (no escapes, so $$ and quotes stay as they are).
wq() {
	mkdir -p "$FX/$(dirname "$1/$2")"
	cat >"$FX/$1/$2"
}
crlf() { perl -pi -e 's/\n/\r\n/' "$FX/$1"; }	# crlf FILE: CRLF line endings
no_eol() { perl -0pi -e 's/\r?\n\z//' "$FX/$1"; }	# no_eol FILE: drops the final newline

# The layouts of tests/pg/t/06_layouts_pg.sql, each with PostgreSQL's
# tricky parts: dollar-quoted bodies ($$ and $tag$) with semicolons inside,
# DO blocks, semicolons and quotes in comments, no final newline, empty and
# comment-only downs, CRLF.
layout_fixtures() {
	# golang-migrate
	wq ly_golang 000001_create_items.up.sql <<'EOS'
-- items; the 'first' table
CREATE TABLE gl_items (id serial PRIMARY KEY, name text NOT NULL);
CREATE FUNCTION gl_item_count() RETURNS bigint LANGUAGE sql
AS $$ SELECT count(*) FROM gl_items; $$;
EOS
	wq ly_golang 000001_create_items.down.sql <<'EOS'
DROP FUNCTION gl_item_count();
DROP TABLE gl_items;
EOS
	wq ly_golang 000002_audit.up.sql <<'EOS'
CREATE TABLE gl_audit (msg text);
/* a block comment; with 'quotes' and a $$ that opens nothing */
CREATE FUNCTION gl_audit_fn() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
	INSERT INTO gl_audit VALUES ('added; ' || NEW.name);  -- it's a ; in a comment
	RETURN NEW;
END;
$body$;
CREATE TRIGGER gl_items_ins AFTER INSERT ON gl_items
	FOR EACH ROW EXECUTE FUNCTION gl_audit_fn();
EOS
	crlf ly_golang/000002_audit.up.sql
	wq ly_golang 000002_audit.down.sql <<'EOS'
DROP TRIGGER gl_items_ins ON gl_items;
DROP FUNCTION gl_audit_fn();
DROP TABLE gl_audit;
EOS
	crlf ly_golang/000002_audit.down.sql
	wq ly_golang 000003_seed.up.sql <<'EOS'
DO $$
DECLARE
	n int := 0;
BEGIN
	FOR n IN 1..3 LOOP
		INSERT INTO gl_items (name) VALUES ('item ' || n || ';');
	END LOOP;
END $$;
EOS
	no_eol ly_golang/000003_seed.up.sql
	wq ly_golang 000003_seed.down.sql <<'EOS'
-- nothing to undo; the rows go with the table
EOS

	# Flyway: V/U, dotted and underscored versions
	wq ly_flyway V1__create_accounts.sql <<'EOS'
CREATE TABLE fl_accounts (id int PRIMARY KEY, owner text);
EOS
	wq ly_flyway U1__create_accounts.sql <<'EOS'
DROP TABLE fl_accounts;
EOS
	wq ly_flyway V1.1__seed.sql <<'EOS'
INSERT INTO fl_accounts VALUES (1, 'o''brien; jr');
EOS
	no_eol ly_flyway/V1.1__seed.sql
	wq ly_flyway U1.1__seed.sql <<'EOS'
DELETE FROM fl_accounts;
EOS
	wq ly_flyway V1_2__function.sql <<'EOS'
/* ; */ CREATE FUNCTION fl_owner(int) RETURNS text LANGUAGE plpgsql STABLE AS $fn$
DECLARE
	o text;
BEGIN
	SELECT owner INTO o FROM fl_accounts WHERE id = $1;
	RETURN o;
END
$fn$;
EOS
	crlf ly_flyway/V1_2__function.sql
	wq ly_flyway U1_2__function.sql <<'EOS'
DROP FUNCTION fl_owner(int);
EOS
	crlf ly_flyway/U1_2__function.sql
	wq ly_flyway V10__more.sql <<'EOS'
CREATE TABLE fl_more (x int);
-- a SQL-standard body: semicolons without dollar quotes
CREATE FUNCTION fl_more_add(n int) RETURNS void LANGUAGE sql
BEGIN ATOMIC
	INSERT INTO fl_more VALUES (n);
	INSERT INTO fl_more VALUES (n + 1);
END;
EOS
	wq ly_flyway U10__more.sql <<'EOS'
-- nothing to undo but the function and the table; "quoted"
DROP FUNCTION fl_more_add(int);
DROP TABLE fl_more;
EOS

	# diesel: one folder per migration, metadata.toml ignored
	wq ly_diesel 2018-01-14-171611_create_posts/up.sql <<'EOS'
CREATE TABLE ds_posts (id serial PRIMARY KEY, title text);
CREATE FUNCTION ds_title_upper() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	NEW.title := upper(NEW.title);  -- ';'
	RETURN NEW;
END $$;
CREATE TRIGGER ds_posts_upper BEFORE INSERT ON ds_posts
	FOR EACH ROW EXECUTE FUNCTION ds_title_upper();
EOS
	wq ly_diesel 2018-01-14-171611_create_posts/down.sql <<'EOS'
DROP TABLE ds_posts;
DROP FUNCTION ds_title_upper();
EOS
	wq ly_diesel 2018-01-15-093000_seed/up.sql <<'EOS'
INSERT INTO ds_posts (title) VALUES ('a;b');
EOS
	no_eol ly_diesel/2018-01-15-093000_seed/up.sql
	wq ly_diesel 2018-01-15-093000_seed/down.sql </dev/null
	wq ly_diesel 2018-01-15-093000_seed/metadata.toml <<'EOS'
run_in_transaction = true
EOS

	# dbmate: up and down sections
	wq ly_dbmate 20240101120000_create_tags.sql <<'EOS'
-- migrate:up
CREATE TABLE dm_tags (id int PRIMARY KEY, label text);
CREATE FUNCTION dm_label(int) RETURNS text LANGUAGE sql
AS $q$ SELECT label FROM dm_tags WHERE id = $1; $q$;

-- migrate:down
DROP FUNCTION dm_label(int);
DROP TABLE dm_tags;
EOS
	wq ly_dbmate 20240102000000_seed.sql <<'EOS'
-- migrate:up
INSERT INTO dm_tags VALUES (1, 'x'); -- migrate:down in a comment
DO $$ BEGIN PERFORM 1; END $$;
-- migrate:down
-- nothing to undo: the table goes in the previous down
EOS
	crlf ly_dbmate/20240102000000_seed.sql

	# goose: sections, mixed-case annotations, StatementBegin/End
	wq ly_goose 00001_create_users.sql <<'EOS'
-- +goose Up
CREATE TABLE gs_users (id int PRIMARY KEY, name text);
CREATE TABLE gs_log (msg text);
-- +goose StatementBegin
CREATE FUNCTION gs_log_fn() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO gs_log VALUES ('added; ' || NEW.name);
	RETURN NEW;
END;
$$;
-- +goose StatementEnd
CREATE TRIGGER gs_users_ins AFTER INSERT ON gs_users
	FOR EACH ROW EXECUTE FUNCTION gs_log_fn();
-- +goose Down
DROP TABLE gs_users;
DROP TABLE gs_log;
DROP FUNCTION gs_log_fn();
EOS
	wq ly_goose 00002_seed.sql <<'EOS'
-- +goose up
INSERT INTO gs_users VALUES (1, 'it''s');
-- +GOOSE DOWN
EOS
	wq ly_goose 00010_more.sql <<'EOS'
-- a header comment
-- +Goose Up
CREATE TABLE gs_more (x int);
-- +goose down
DROP TABLE gs_more;
EOS
	crlf ly_goose/00010_more.sql
	no_eol ly_goose/00010_more.sql

	# sqlx simple: up only
	wq ly_sqlx 20210422143411_create_notes.sql <<'EOS'
CREATE TABLE sx_notes (id bigserial PRIMARY KEY, body text);
DO $do$
BEGIN
	PERFORM 'notes; created';
END
$do$;
EOS
	wq ly_sqlx 20210422143412_seed.sql <<'EOS'
INSERT INTO sx_notes (body) VALUES ($$it's; fine$$);
EOS
	no_eol ly_sqlx/20210422143412_seed.sql

	# migrate_apply's options: opt_a has 1 and 3, opt_b adds 2 (out of
	# order once 3 is applied), opt_c has lost 1 and 2 and adds 4
	for f in opt_a opt_b opt_c; do mkdir -p "$FX/$f"; done
	for v in 1 2 3 4; do
		printf 'CREATE TABLE opt_%s (x int);\n' "$v" > "$FX/opt_b/${v}_t${v}.up.sql"
	done
	cp "$FX/opt_b/1_t1.up.sql" "$FX/opt_b/3_t3.up.sql" "$FX/opt_a/"
	cp "$FX/opt_b/3_t3.up.sql" "$FX/opt_b/4_t4.up.sql" "$FX/opt_c/"
	rm "$FX/opt_b/4_t4.up.sql"

	# nested block comments, which PostgreSQL allows, before statements
	wq ly_nested 1_nested.up.sql <<'EOS'
/* a /* b */ c; */
CREATE TABLE nc_one (x int);
/* outer /* inner; */ still comment; */ CREATE TABLE nc_two (x int);
EOS
}

# flyway_sum FOLDER FILE: Flyway's checksum of the file (CRC-32 over its
# lines without terminators, a leading BOM left out, signed 32-bit), written
# to flyway_sums/FOLDER/FILE for the test to read.
flyway_sum() {
	mkdir -p "$FX/flyway_sums/$1"
	python3 -c '
import sys, zlib
d = open(sys.argv[1], "rb").read()
if d.startswith(b"\xef\xbb\xbf"):
    d = d[3:]
c = 0
for line in d.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n"):
    c = zlib.crc32(line, c)
print(c - (1 << 32) if c >= 1 << 31 else c)
' "$FX/$1/$2" >"$FX/flyway_sums/$1/$2"
}

# The folders of tests/pg/t/07_adopt_tools.sql, as each tool wrote them.
adopt_fixtures() {
	local f
	# Flyway: BOM and CRLF, no final newline, undo files
	w ad_flyway V1__create_users.sql '\xef\xbb\xbfCREATE TABLE af_users (id int PRIMARY KEY, name text);\r\n'
	wq ad_flyway V1_1__seed.sql <<'EOS'
INSERT INTO af_users VALUES (1, 'ann');
-- no final newline
EOS
	no_eol ad_flyway/V1_1__seed.sql
	w ad_flyway U1_1__seed.sql 'DELETE FROM af_users;\n'
	w ad_flyway V2__posts.sql 'CREATE TABLE af_posts (id int PRIMARY KEY);\n'
	w ad_flyway U2__posts.sql 'DROP TABLE af_posts;\n'
	for f in V1__create_users.sql V1_1__seed.sql V2__posts.sql; do
		flyway_sum ad_flyway $f
	done
	# the seed edited since Flyway ran it; the seed with CRLF only
	mkdir -p "$FX/ad_flyway_changed" "$FX/ad_flyway_crlf"
	cp -p "$FX"/ad_flyway/*.sql "$FX/ad_flyway_changed/"
	cp -p "$FX"/ad_flyway/*.sql "$FX/ad_flyway_crlf/"
	w ad_flyway_changed V1_1__seed.sql "INSERT INTO af_users VALUES (1, 'bob');\n"
	crlf ad_flyway_crlf/V1_1__seed.sql

	# golang-migrate
	w ad_golang 000001_users.up.sql 'CREATE TABLE ag_users (id int PRIMARY KEY);\n'
	w ad_golang 000001_users.down.sql 'DROP TABLE ag_users;\n'
	w ad_golang 000002_posts.up.sql 'CREATE TABLE ag_posts (id int PRIMARY KEY);\n'
	w ad_golang 000002_posts.down.sql 'DROP TABLE ag_posts;\n'
	w ad_golang 000003_tags.up.sql 'CREATE TABLE ag_tags (id int PRIMARY KEY);\n'

	# morph
	for f in 1_a 2_b 3_c; do
		w ad_morph "00000$f.up.sql" "CREATE TABLE am_${f#*_} (x int);\n"
	done

	# dbmate
	w ad_dbmate 20240101120000_a.sql '-- migrate:up\nCREATE TABLE ad_a (x int);\n-- migrate:down\nDROP TABLE ad_a;\n'
	w ad_dbmate 20240102120000_b.sql '-- migrate:up\nCREATE TABLE ad_b (x int);\n-- migrate:down\nDROP TABLE ad_b;\n'

	# goose
	w ad_goose 00001_a.sql '-- +goose Up\nCREATE TABLE ao_a (x int);\n-- +goose Down\nDROP TABLE ao_a;\n'
	w ad_goose 00002_b.sql '-- +goose Up\nCREATE TABLE ao_b (x int);\n'
	w ad_goose 00003_c.sql '-- +goose Up\nCREATE TABLE ao_c (x int);\n'

	# sqlx
	w ad_sqlx 20210422143411_a.sql 'CREATE TABLE as_a (x int);\n'
	w ad_sqlx 20210422143412_b.sql 'CREATE TABLE as_b (x int);\n'

	# diesel
	w ad_diesel/2018-01-14-171611_a up.sql 'CREATE TABLE ae_a (x int);\n'
	w ad_diesel/2018-01-14-171611_a down.sql 'DROP TABLE ae_a;\n'
	w ad_diesel/2018-01-15-000000_b up.sql 'CREATE TABLE ae_b (x int);\n'
}

# The operator's functions (tests/pg/t/11_operators.sql, run.sh): ops_base
# is applied first; ops_bad then has every kind of problem at once; ops_edit
# only edited applied files (repair); ops_more new migrations (plan,
# script), one holding "$migrate$"; fly_base / fly_more a Flyway repeatable
# that changed.  rail_* ALTER a table a reader holds.
operator_fixtures() {
	w ops_base 1_a.up.sql "CREATE TABLE op_a (x int);\n"
	w ops_base 1_a.down.sql "DROP TABLE op_a;\n"
	w ops_base 2_b.up.sql "CREATE TABLE op_b (x text);\nINSERT INTO op_b VALUES ('it''s');\n"
	w ops_base 2_b.down.sql "DROP TABLE op_b;\n"
	w ops_base 3_c.up.sql "CREATE TABLE op_c (x int);\n"
	w ops_base 3_c.down.sql "DROP TABLE op_c;\n"
	w ops_base 4_d.up.sql "CREATE TABLE op_d (x int);\n"

	mkdir -p "$FX/ops_bad" && cp -p "$FX"/ops_base/* "$FX/ops_bad/"
	w ops_bad 1_a.up.sql "CREATE TABLE op_a (x int, y int);\n"		# changed
	w ops_bad 2_b.up.sql "CREATE TABLE op_b (x text);  \r\nINSERT INTO op_b VALUES ('it''s');\r\n\r\n"	# reformatted
	rm "$FX/ops_bad/3_c.up.sql" "$FX/ops_bad/3_c.down.sql"		# missing
	w ops_bad 0_early.up.sql "CREATE TABLE op_early (x int);\n"	# out of order
	w ops_bad 5_e.up.sql "CREATE TABLE op_e (x int);\nCOMMIT;\n"	# not allowed
	w ops_bad 6_f.up.sql "CREATE TABLE op_f (x int);\n\nCREAT TABLE op_g (x int);\n"	# syntax, line 3
	w ops_bad 7_g.up.sql "CREATE TABLE op_g (x int);\n"
	w ops_bad 07_h.up.sql "CREATE TABLE op_h (x int);\n"		# duplicate of 7
	w ops_bad notes.sql "-- not a migration\n"				# bad name
	w ops_bad 8_i.down.sql "DROP TABLE op_i;\n"			# orphan down

	mkdir -p "$FX/ops_edit" && cp -p "$FX"/ops_base/* "$FX/ops_edit/"
	w ops_edit 1_a.up.sql "CREATE TABLE op_a (x int); -- reviewed\n"
	w ops_edit 1_a.down.sql "DROP TABLE op_a; -- reviewed\n"
	w ops_edit 2_b.up.sql "CREATE TABLE op_b (x text);  \r\nINSERT INTO op_b VALUES ('it''s');\r\n\r\n"

	mkdir -p "$FX/ops_more" && cp -p "$FX"/ops_base/* "$FX/ops_more/"
	w ops_more 5_e.up.sql "CREATE TABLE IF NOT EXISTS op_e (x int);\nINSERT INTO op_e VALUES (1);\n"
	w ops_more 5_e.down.sql "DROP TABLE op_e;\n"
	wq ops_more 6_f.up.sql <<'EOS'
-- a body quoted with the tag the script would use first
CREATE OR REPLACE FUNCTION op_f() RETURNS text LANGUAGE sql
AS $migrate$ SELECT 'it''s $x$ \n'::text $migrate$;
EOS

	w fly_base V1__a.sql "CREATE TABLE fo_a (x int);\n"
	w fly_base R__v.sql "CREATE OR REPLACE VIEW fo_v AS SELECT 1 AS one;\n"
	w fly_more V1__a.sql "CREATE TABLE fo_a (x int);\n"
	w fly_more V2__b.sql "CREATE TABLE fo_b (x int);\n"
	w fly_more R__v.sql "CREATE OR REPLACE VIEW fo_v AS SELECT 1 AS one, 2 AS two;\n"

	# the blocking rail: each ALTERs rail_t, after a statement that takes no lock
	for f in rail rail_off rail_out; do
		w $f "1_alter_$f.up.sql" "SELECT 1;\nALTER TABLE rail_t ADD COLUMN $f int;\n"
	done
	# two in one call: the first creates a table, the second waits
	w rail_two 1_first.up.sql "CREATE TABLE rail_first (x int);\nINSERT INTO rail_first VALUES (1);\n"
	w rail_two 2_alter_rail_two.up.sql "ALTER TABLE rail_t ADD COLUMN rail_two int;\n"
	w rail_seen 1_seen.up.sql "CREATE TABLE rail_seen AS SELECT pg_catalog.current_setting('lock_timeout') AS v;\n"
	w rail_seen 1_seen.down.sql "DROP TABLE rail_seen;\n"

	# outside a transaction (CALL migrate_run): a concurrent index build on
	# the table ob_big the test fills, found by its statement
	w out_cic 1_ob_idx.up.sql "-- built while the application writes\nCREATE INDEX CONCURRENTLY ob_big_v ON ob_big (v);\n"
	w out_cic 1_ob_idx.down.sql "DROP INDEX ob_big_v;\n"
	# the same, cancelled and killed in the middle, then resumed
	w out_cancel 1_oc_idx.up.sql "CREATE INDEX CONCURRENTLY ob_big_w ON ob_big (v, id);\n"
	w out_kill 1_ok_idx.up.sql "CREATE INDEX CONCURRENTLY ob_big_k ON ob_big (id, v);\n"
	# a REINDEX CONCURRENTLY killed while it waits, leaving its copy invalid
	w out_reindex 1_or_idx.up.sql "REINDEX INDEX CONCURRENTLY ob_big_r;\n"
	# a new enum value used in the same migration, marked non-transactional
	w out_enum 00001_mood.sql "-- +goose NO TRANSACTION\n-- +goose Up\nCREATE TYPE mood AS ENUM ('sad');\nALTER TYPE mood ADD VALUE 'happy';\nCREATE TABLE moods (m mood NOT NULL DEFAULT 'happy');\nINSERT INTO moods DEFAULT VALUES;\n"
	# transactional and non-transactional migrations in one folder
	w out_mixed 1_mx.up.sql "CREATE TABLE mx (id int);\nINSERT INTO mx VALUES (1);\n"
	w out_mixed 2_mx_idx.up.sql "CREATE INDEX CONCURRENTLY mx_id ON mx (id);\nVACUUM (ANALYZE) mx;\n"
	w out_mixed 3_color.up.sql "-- no-transaction\nCREATE TYPE color AS ENUM ('red');\nALTER TYPE color ADD VALUE 'blue';\nCREATE TABLE paint (c color DEFAULT 'blue');\n"
	w out_mixed 4_fill.up.sql "INSERT INTO mx VALUES (2);\nINSERT INTO paint DEFAULT VALUES;\n"
	# resumed at the failed statement: the first one must not run again
	w out_resume 20240101000000_r.sql "-- migrate:up transaction:false\nINSERT INTO or_ran VALUES (pg_catalog.nextval('or_seq'));\nCREATE INDEX CONCURRENTLY or_ran_n ON or_ran (n);\nSELECT 1 / (SELECT count(*) FROM or_gate)::int;\nINSERT INTO or_ran VALUES (100);\n"
	# never outside: transaction control and COPY FROM STDIN, even marked
	w out_commit 1_c.up.sql "-- morph:nontransactional\nCREATE TABLE oc (id int);\nCOMMIT;\n"
	w out_copy 1_c.up.sql "CREATE INDEX CONCURRENTLY ocp ON pg_catalog.pg_class (oid);\nCOPY oc FROM STDIN;\n"
	# who runs them: the caller's session user and current role (a role
	# that cannot log in, after SET SESSION AUTHORIZATION); the down
	# script, the role that applied it
	w out_auth 1_oa.sql "-- +goose NO TRANSACTION\n-- +goose Up\nCREATE TABLE oa_who AS SELECT current_user::text AS cu, session_user::text AS su;\nCREATE INDEX CONCURRENTLY oa_who_cu ON oa_who (cu);\n-- +goose Down\nDROP INDEX CONCURRENTLY oa_who_cu;\nINSERT INTO oa_who SELECT current_user::text, session_user::text;\n"
	w out_auth_deny 1_od.sql "-- +goose NO TRANSACTION\n-- +goose Up\nCREATE INDEX CONCURRENTLY oa_secret_a ON oa_secret (a);\n"
	# what earlier statements and the caller set is seen by later ones
	w out_settings 1_os.sql "-- +goose NO TRANSACTION\n-- +goose Up\nSET search_path = app;\nCREATE INDEX CONCURRENTLY users_email ON users (email);\nSELECT pg_catalog.set_config('os.flag', 'on', false);\nCREATE TABLE os_seen AS SELECT pg_catalog.current_setting('os.flag') AS flag,\n  pg_catalog.current_setting('os.caller', true) AS caller, pg_catalog.current_setting('datestyle') AS ds,\n  pg_catalog.current_setting('search_path') AS sp;\nRESET search_path;\nCREATE TABLE os_after AS SELECT pg_catalog.current_setting('search_path') AS sp;\n"
	w out_settings 2_os2.sql "-- +goose NO TRANSACTION\n-- +goose Up\nCREATE INDEX CONCURRENTLY os_only_a ON os_only (a);\nCREATE TABLE os_fresh AS SELECT pg_catalog.current_setting('os.flag', true) AS flag;\n"
	# an edit after a statement's parsed end (before its semicolon) is an
	# edit of what ran
	w out_semi_a 1_semi.sql "-- +goose NO TRANSACTION\n-- +goose Up\nCREATE INDEX CONCURRENTLY semi_i1 ON semi (a);\nSELECT 1 / (SELECT count(*) FROM semi_gate)::int;\n"
	w out_semi_b 1_semi.sql "-- +goose NO TRANSACTION\n-- +goose Up\nCREATE INDEX CONCURRENTLY semi_i1 ON semi (a) WHERE a > 0;\nSELECT 1 / (SELECT count(*) FROM semi_gate)::int;\n"
	# out_half: 1 applied, 2 stops half way (its index built, then 1 / 0)
	w out_half 1_t.sql "-- +goose Up\nCREATE TABLE half_t (a int);\n-- +goose Down\nDROP TABLE half_t;\n"
	w out_half 2_idx.sql "-- +goose NO TRANSACTION\n-- +goose Up\nCREATE INDEX CONCURRENTLY half_i ON half_t (a);\nSELECT 1 / 0;\n-- +goose Down\nDROP INDEX CONCURRENTLY half_i;\n"
	# a unique index that fails on duplicates, then a de-duplicating
	# DELETE put before it: the invalid index goes before it runs again
	w out_dedup_a 1_orders.sql "-- +goose NO TRANSACTION\n-- +goose Up\nCREATE UNIQUE INDEX CONCURRENTLY orders_uniq ON orders (ref);\n"
	w out_dedup_b 1_orders.sql "-- +goose NO TRANSACTION\n-- +goose Up\nDELETE FROM orders a USING orders b WHERE a.ref = b.ref AND a.id > b.id;\nCREATE UNIQUE INDEX CONCURRENTLY orders_uniq ON orders (ref);\n"
	# a down section marked to run outside a transaction, of an up that
	# runs in one (dbmate marks each section)
	w out_down_dbmate 20240101000000_dd.sql "-- migrate:up\nCREATE TABLE dd (a int);\nCREATE INDEX dd_a ON dd (a);\n-- migrate:down transaction:false\nDROP INDEX CONCURRENTLY dd_a;\nDROP TABLE dd;\n"
	# down scripts outside a transaction: CALL migrate_run_down
	w out_down 1_t.sql "-- +goose Up\nCREATE TABLE t (a int);\n-- +goose Down\nDROP TABLE t;\n"
	w out_down 2_idx.sql "-- +goose NO TRANSACTION\n-- +goose Up\nCREATE INDEX CONCURRENTLY t_a ON t (a);\n-- +goose Down\nDROP INDEX CONCURRENTLY t_a;\n"
	w out_down_fail 1_t.sql "-- +goose Up\nCREATE TABLE t (a int);\n-- +goose Down\nDROP TABLE t;\n"
	w out_down_fail 2_idx.sql "-- +goose NO TRANSACTION\n-- +goose Up\nCREATE INDEX CONCURRENTLY t_a ON t (a);\n-- +goose Down\nDROP INDEX CONCURRENTLY t_a;\nSELECT 1 / (SELECT count(*) FROM od_gate)::int;\nCREATE TABLE od_after (a int);\n"
	# outside ASCII, in a LATIN1 database: progress offsets of the UTF-8
	# script, the file's name in a notice
	w out_latin1 "1_café.sql" "-- +goose NO TRANSACTION\n-- +goose Up\nCOMMENT ON TABLE ol_t IS 'café';\nCREATE UNIQUE INDEX CONCURRENTLY ol_u ON ol_t (a);\n"
	# an unnamed concurrent build the call was cancelled in: which index it
	# built cannot be told
	w out_unnamed 1_ou_idx.up.sql "CREATE INDEX CONCURRENTLY ON ob_big (v, id);\n"
	# a DO block that commits: each statement commits with its progress
	w out_do_commit 1_do.sql "-- +goose NO TRANSACTION\n-- +goose Up\nCREATE TABLE dc (a int);\nDO \$\$BEGIN INSERT INTO dc VALUES (1); COMMIT; END\$\$;\n"
	# statements that refuse a transaction block: DETACH PARTITION
	# CONCURRENTLY (told by its text), CLUSTER of a partitioned table (only
	# when it runs)
	w out_block 1_b.sql "-- +goose NO TRANSACTION\n-- +goose Up\nCREATE TABLE pd (a int) PARTITION BY LIST (a);\nCREATE TABLE pd1 PARTITION OF pd FOR VALUES IN (1);\nCREATE INDEX pd_a ON pd (a);\nCLUSTER pd USING pd_a;\nALTER TABLE pd DETACH PARTITION pd1 CONCURRENTLY;\n"
	w out_detach 1_d.up.sql "ALTER TABLE pd DETACH PARTITION pd1 CONCURRENTLY;\n"
	# many small statements outside a transaction (the cost per statement)
	{
		printf -- '-- +goose NO TRANSACTION\n-- +goose Up\nCREATE TABLE om_t (a int);\n'
		for f in $(seq 1 100); do printf "COMMENT ON TABLE om_t IS 'v%d';\n" "$f"; done
	} >"$FX/out_many.sql.tmp"
	mkdir -p "$FX/out_many" && mv "$FX/out_many.sql.tmp" "$FX/out_many/1_many.sql"
}

# Names and text outside ASCII, for databases in other encodings (LATIN1,
# EUC_JP, SQL_ASCII): the files are UTF-8, as every migration file is.  The
# euro sign is in neither LATIN1 nor EUC_JP.
encoding_fixtures() {
	w enc_cafe "1_café.up.sql" "CREATE TABLE enc_cafe (n text);\nINSERT INTO enc_cafe VALUES ('thé');\n"
	w enc_cafe "1_café.down.sql" "DROP TABLE enc_cafe;\n"
	mkdir -p "$FX/enc_euro_text" "$FX/enc_euro_name"
	cp -p "$FX"/enc_cafe/* "$FX/enc_euro_text/"
	cp -p "$FX"/enc_cafe/* "$FX/enc_euro_name/"
	# the probe runs before the file that cannot be converted, if anything runs
	w enc_euro_text 2_probe.up.sql "SELECT pg_catalog.nextval('public.probe');\n"
	w enc_euro_text 3_prix.up.sql "CREATE TABLE prix (p text);\n\nINSERT INTO prix VALUES ('5 €');\n"
	w enc_euro_name 2_probe.up.sql "SELECT pg_catalog.nextval('public.probe');\n"
	w enc_euro_name "3_€.up.sql" "CREATE TABLE euro (id int);\n"
	w enc_kana "1_あ.up.sql" "-- かな\nCREATE TABLE kana (n text);\nINSERT INTO kana VALUES ('あ');\n"
	w enc_kana "1_あ.down.sql" "DROP TABLE kana;\n"
	mkdir -p "$FX/enc_kana_fail"
	cp -p "$FX"/enc_kana/* "$FX/enc_kana_fail/"
	w enc_kana_fail "2_い.up.sql" "-- いろは\nSELECT 'に';\nSELECT 1 / 0;\n"
	w enc_kana_edited "1_あ.up.sql" "-- かな, edited\nCREATE TABLE kana (n text);\nINSERT INTO kana VALUES ('あ');\n"
	w enc_flyway "V1__thé.sql" "CREATE TABLE the (n text);\n"
	w enc_flyway "R__vue_café.sql" "CREATE OR REPLACE VIEW vue_cafe AS SELECT 'é'::text AS e;\n"
	w enc_syntax 1_s.up.sql "SELECT 1;\nCREATE TABLE s (id int) été;\n"
	w "dossier_é" 1_d.up.sql "CREATE TABLE dossier (id int);\n"
}

# The attack catalogue's folders (t/14_attacks.sql).
attack_fixtures() {
	# a deploy role's migration whose down script would make it superuser
	w att_evil_down 1_a.up.sql "CREATE TABLE att_a (id int);\n"
	w att_evil_down 1_a.down.sql "ALTER ROLE att_deployer SUPERUSER;\nDROP TABLE att_a;\n"
	# a plain migration with a down script, applied by a superuser
	w att_plain 1_p.up.sql "CREATE TABLE att_p (id int);\n"
	w att_plain 1_p.down.sql "DROP TABLE att_p;\n"
	# a Flyway folder to adopt
	w att_flyway V1__one.sql "CREATE TABLE att_fw (id int);\n"
	w att_flyway V2__two.sql "CREATE TABLE att_fw2 (id int);\n"
}

# Each tool's own order and names (tests/pg/t/06_layouts_pg.sql) and
# adoption where they matter (07_adopt_tools.sql).
order_fixtures() {
	local e
	# diesel orders by version text: 2024-03-13_170000 (20240313) runs
	# after 2024-03-06-170000, and uses its table
	w ly_diesel_text/00000000000000_diesel_initial_setup up.sql "CREATE TABLE dt_setup (x int);\n"
	w ly_diesel_text/00000000000000_diesel_initial_setup down.sql "DROP TABLE dt_setup;\n"
	w ly_diesel_text/2024-03-06-170000_add_users up.sql "CREATE TABLE dt_users (id int PRIMARY KEY);\n"
	w ly_diesel_text/2024-03-06-170000_add_users down.sql "DROP TABLE dt_users;\n"
	w ly_diesel_text/2024-03-13_170000_users_cascade up.sql \
		"CREATE TABLE dt_posts (user_id int REFERENCES dt_users ON DELETE CASCADE);\n"
	w ly_diesel_text/2024-03-13_170000_users_cascade down.sql "DROP TABLE dt_posts;\n"
	# dbmate takes ^(\d+).*\.sql$
	w ly_dbmate_names 00000000000000-initial-schema.sql \
		"-- migrate:up\nCREATE TABLE dn_schema (x int);\n-- migrate:down\nDROP TABLE dn_schema;\n"
	w ly_dbmate_names 20240101120000.sql \
		"-- migrate:up\nCREATE TABLE dn_next (x int);\n-- migrate:down\nDROP TABLE dn_next;\n"
	# MongooseIM: priv/migrations with every engine's scripts, a gap (no
	# script for 5.10.0 to 6.1.0) and the fresh-install files beside them
	w ly_mongooseim pg.sql "CREATE TABLE mi_fresh_never (x int);\n"
	w ly_mongooseim mysql.sql "CREATE TABLE mi_fresh_never (x int) ENGINE=InnoDB;\n"
	w ly_mongooseim pgsql_4.2.0_5.0.0.sql "CREATE TABLE mi_500 (x int);\n"
	w ly_mongooseim pgsql_5.0.0_5.1.0.sql "ALTER TABLE mi_500 ADD COLUMN y int;\n"
	w ly_mongooseim pgsql_5.1.0_5.10.0.sql "CREATE TABLE mi_5100 (x int);\n"
	w ly_mongooseim pgsql_6.1.0_6.2.0.sql "CREATE TABLE mi_620 (x int);\n"
	for e in mysql mssql cockroachdb; do
		w ly_mongooseim "${e}_4.2.0_5.0.0.sql" "CREATE TABLE mi_500 (x int) ENGINE=InnoDB;\n"
		w ly_mongooseim "${e}_5.0.0_5.1.0.sql" "ALTER TABLE mi_500 ADD y int;\n"
	done
	w ly_mongooseim_other mysql_4.2.0_5.0.0.sql "CREATE TABLE mi_never (x int) ENGINE=InnoDB;\n"
	w ly_mongooseim_other sqlite_4.2.0_5.0.0.sql "CREATE TABLE mi_never (x int);\n"
	w ly_mongooseim_overlap pgsql_5.0.0_5.1.0.sql "CREATE TABLE mi_never (x int);\n"
	w ly_mongooseim_overlap pgsql_5.0.0_5.2.0.sql "CREATE TABLE mi_never2 (x int);\n"
	# memos: store/migration/{mysql,postgres,sqlite}/{version}/NN__x.sql
	for e in mysql postgres sqlite; do
		w ly_memos/$e LATEST.sql "CREATE TABLE mm_fresh_never (x int);\n"
		w ly_memos/$e/0.9 00__memo.sql "CREATE TABLE mm_${e}_memo (id int);\n"
		w ly_memos/$e/0.10 00__tag.sql "CREATE TABLE mm_${e}_tag (id int);\n"
		w ly_memos/$e/0.10 01__tag_memo.sql "ALTER TABLE mm_${e}_tag ADD COLUMN memo_id int;\n"
	done
	# a subfolder that is no migration
	w ly_subdir 1_a.up.sql "CREATE TABLE sd_never (x int);\n"
	w ly_subdir/archive 2_b.up.sql "CREATE TABLE sd_never2 (x int);\n"
	# goose with a Go migration between SQL ones
	w ly_goose_go 00001_users.sql "-- +goose Up\nCREATE TABLE gg_users (id int);\n-- +goose Down\nDROP TABLE gg_users;\n"
	w ly_goose_go 00002_backfill.go "package migrations\n"
	w ly_goose_go 00003_posts.sql "-- +goose Up\nCREATE TABLE gg_posts (id int);\n-- +goose Down\nDROP TABLE gg_posts;\n"
	w ly_goose_go helpers.go "package migrations\n"
	# adoption: goose applied a Go migration; diesel in its own order
	w ad_goose_go 00001_a.sql "-- +goose Up\nCREATE TABLE aog_a (x int);\n"
	w ad_goose_go 00002_b.go "package migrations\n"
	w ad_goose_go 00003_c.sql "-- +goose Up\nCREATE TABLE aog_c (x int);\n"
	w ad_diesel_text/00000000000000_diesel_initial_setup up.sql "CREATE TABLE aet_setup (x int);\n"
	w ad_diesel_text/2024-03-06-170000_users up.sql "CREATE TABLE aet_users (id int PRIMARY KEY);\n"
	w ad_diesel_text/2024-03-13_170000_posts up.sql "CREATE TABLE aet_posts (user_id int REFERENCES aet_users);\n"
}
