#!/usr/bin/python3
"""bin/migrate, the small command over sqlite3 and psql, on SQLite (its
PostgreSQL side is in tests/pg/data_forms.sh): each command run by dash
(POSIX sh), `new` in every layout it writes (and what the extension then
makes of the files), validate's exit code, make install's layout.

    python3 tests/sqlite/test_cli.py [build/migrate] [name-filter]
"""
import os
import shutil
import subprocess
import tempfile

from harness import EXT, main, test

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CLI = os.path.join(ROOT, "bin", "migrate")


def cli(c, *args, db=True, ok=True):
    env = dict(os.environ, MIGRATE_SQLITE_EXT=EXT)
    env.pop("DATABASE_URL", None)
    argv = ["dash", CLI] + (["--db", "sqlite:" + c.db] if db else []) + list(args)
    p = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=c.root, timeout=120)
    if ok:
        assert p.returncode == 0, "%s: exit %d\n%s%s" % (args, p.returncode, p.stdout, p.stderr)
    return p


def names(folder):
    out = []
    for dirpath, _, files in os.walk(folder):
        out += [os.path.relpath(os.path.join(dirpath, f), folder) for f in files]
    return sorted(out)


@test
def up_status_plan_down_validate_script(c):
    c.put("1_users.up.sql", "CREATE TABLE users(id);\n")
    c.put("1_users.down.sql", "DROP TABLE users;\n")
    c.put("2_posts.up.sql", "CREATE TABLE posts(id);\n")
    c.put("2_posts.down.sql", "DROP TABLE posts;\n")
    d = ["--dir", c.dir]
    assert "2_posts.up.sql" in cli(c, *d, "plan").stdout
    assert cli(c, *d, "up", "--target", "1").stdout.strip() == "applied 1 migration(s)"
    st = cli(c, *d, "status").stdout
    assert "users" in st and "applied" in st and "pending" in st, st
    assert "CREATE TABLE posts(id);" in cli(c, *d, "script").stdout
    assert cli(c, *d, "up").stdout.strip() == "applied 1 migration(s)"
    assert c.tables() == ["migrate_history", "posts", "users"], c.tables()
    assert cli(c, *d, "validate").stdout.strip() == "no problems"
    assert cli(c, *d, "down", "2").stdout.strip() == "rolled back 2 migration(s)"
    assert c.tables() == ["migrate_history"], c.tables()
    # the default folder: db/migrations under the current folder
    os.makedirs(os.path.join(c.root, "db", "migrations"))
    shutil.copy(os.path.join(c.dir, "1_users.up.sql"), os.path.join(c.root, "db", "migrations"))
    assert cli(c, "up").stdout.strip() == "applied 1 migration(s)"


@test
def validate_exits_1_on_an_error(c):
    c.put("1_a.up.sql", "CREATE TABLE a(x);\n")
    cli(c, "--dir", c.dir, "up")
    c.put("1_a.up.sql", "CREATE TABLE a(y);\n")
    p = cli(c, "--dir", c.dir, "validate", ok=False)
    assert p.returncode == 1 and "error | changed |" in p.stdout, (p.returncode, p.stdout)
    p = cli(c, "--dir", c.dir, "up", ok=False)
    assert p.returncode != 0 and "applied migration 1 has changed" in p.stderr, p.stderr


@test
def refusals_say_why(c):
    p = cli(c, "up", db=False, ok=False)
    assert p.returncode == 2 and "say which database" in p.stderr, p.stderr
    p = cli(c, "--dir", os.path.join(c.root, "nope"), "up", ok=False)
    assert p.returncode == 2 and "no migration folder" in p.stderr, p.stderr
    p = cli(c, "--dir", c.dir, "down", "x", ok=False)
    assert p.returncode == 2 and "N must be a number" in p.stderr, p.stderr
    p = cli(c, "frobnicate", ok=False)
    assert p.returncode == 2 and "unknown command" in p.stderr, p.stderr


def new_in(c, files, name="add email"):
    for f, text in files.items():
        path = os.path.join(c.dir, f)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as fh:
            fh.write(text)
    before = set(names(c.dir))
    out = cli(c, "--dir", c.dir, "new", name, db=False).stdout.split()
    made = sorted(set(names(c.dir)) - before)
    assert sorted(os.path.relpath(p, c.dir) for p in out) == made, (out, made)
    # the extension takes them as the folder's next migration
    rc, plan, err = c.shell("SELECT group_concat(file, ' ') FROM migrate_plan('%s')" % c.dir)
    assert rc == 0, err
    return made, plan


@test
def new_in_each_layout(c):
    made, plan = new_in(c, {"000041_users.up.sql": "SELECT 1;", "000041_users.down.sql": "SELECT 1;"})
    assert made == ["000042_add_email.down.sql", "000042_add_email.up.sql"], made
    assert plan == "000041_users.up.sql 000042_add_email.up.sql", plan
    for f in os.listdir(c.dir):
        os.unlink(os.path.join(c.dir, f))
    made, plan = new_in(c, {"20240101120000_users.up.sql": "SELECT 1;"})
    assert len(made) == 2 and made[0].endswith("_add_email.down.sql") and len(made[0].split("_")[0]) == 14, made
    assert plan.split()[1] == made[1], (plan, made)


@test
def new_flyway(c):
    made, plan = new_in(c, {"V1__users.sql": "SELECT 1;", "V2__posts.sql": "SELECT 1;"})
    assert made == ["V3__add_email.sql"], made
    assert plan == "V1__users.sql V2__posts.sql V3__add_email.sql", plan


@test
def new_dbmate_goose_and_sqlx(c):
    made, plan = new_in(c, {"20240101120000_users.sql": "-- migrate:up\nSELECT 1;\n-- migrate:down\n"})
    with open(os.path.join(c.dir, made[0])) as f:
        assert f.read().startswith("-- migrate:up\n"), made
    shutil.rmtree(c.dir)
    os.mkdir(c.dir)
    made, plan = new_in(c, {"00001_users.sql": "-- +goose Up\nSELECT 1;\n"})
    assert made == ["00002_add_email.sql"], made
    with open(os.path.join(c.dir, made[0])) as f:
        assert f.read() == "-- +goose Up\n\n\n-- +goose Down\n\n"
    assert plan == "00001_users.sql 00002_add_email.sql", plan
    shutil.rmtree(c.dir)
    os.mkdir(c.dir)
    made, plan = new_in(c, {"20240101120000_users.sql": "SELECT 1;"})
    assert len(made) == 1 and made[0].endswith("_add_email.sql"), made


@test
def new_diesel_and_per_engine_folders(c):
    made, plan = new_in(c, {"2018-01-14-171611_users/up.sql": "SELECT 1;",
                            "2018-01-14-171611_users/down.sql": "SELECT 1;"})
    assert len(made) == 2 and made[0].endswith("_add_email/down.sql"), made
    assert plan.split()[-1] == made[1], (plan, made)
    shutil.rmtree(c.dir)
    os.mkdir(c.dir)
    made, plan = new_in(c, {"postgres/1_a.up.sql": "SELECT 1;", "sqlite/1_a.up.sql": "SELECT 1;"})
    assert made == ["postgres/2_add_email.down.sql", "postgres/2_add_email.up.sql",
                    "sqlite/2_add_email.down.sql", "sqlite/2_add_email.up.sql"], made
    assert plan == "sqlite/1_a.up.sql sqlite/2_add_email.up.sql", plan


@test
def new_refuses_what_it_cannot_number(c):
    c.put("pgsql_5.0.0_5.1.0.sql", "SELECT 1;")
    p = cli(c, "--dir", c.dir, "new", "x", db=False, ok=False)
    assert p.returncode == 2 and "upgrade scripts" in p.stderr, p.stderr
    os.unlink(os.path.join(c.dir, "pgsql_5.0.0_5.1.0.sql"))
    os.makedirs(os.path.join(c.dir, "0.22"))
    c.put("0.22/00__a.sql", "SELECT 1;")
    p = cli(c, "--dir", c.dir, "new", "x", db=False, ok=False)
    assert p.returncode == 2 and "version folders" in p.stderr, p.stderr


@test
def posix_sh_and_shellcheck(c):
    if shutil.which("shellcheck"):
        p = subprocess.run(["shellcheck", "-s", "sh", CLI], capture_output=True, text=True)
        assert p.returncode == 0, p.stdout
    p = subprocess.run(["dash", CLI, "--help"], capture_output=True, text=True)
    assert p.returncode == 0 and "new NAME" in p.stdout, p.stdout


@test
def make_install_puts_the_extension_where_load_finds_it(c):
    dest = tempfile.mkdtemp(prefix="mig_install_")
    try:
        p = subprocess.run(["make", "-s", "-C", ROOT, "install", "DESTDIR=" + dest],
                           capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        multiarch = subprocess.run(["cc", "-print-multiarch"], capture_output=True,
                                   text=True).stdout.strip()
        libdir = os.path.join(dest, "usr", "lib", multiarch) if multiarch else os.path.join(dest, "usr", "lib")
        assert names(dest) == sorted([os.path.relpath(os.path.join(libdir, "migrate.so"), dest),
                                      "usr/local/bin/migrate"]), names(dest)
        # that folder is one the loader searches by default: as if it were
        p = subprocess.run(["sqlite3", c.db, ".load migrate", "SELECT migrate_down(0)"],
                           capture_output=True, text=True, env=dict(os.environ, LD_LIBRARY_PATH=libdir))
        assert p.returncode == 0 and p.stdout.strip() == "0", p.stderr
    finally:
        shutil.rmtree(dest)


if __name__ == "__main__":
    raise SystemExit(main("cli"))
