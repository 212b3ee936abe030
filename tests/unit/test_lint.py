"""Migration lint over realistic Prisma migration.sql output and tricky SQL."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from services.core.sql_text import split_statements
from services.migrations.lint import RULES, Finding, lint_migrations, lint_sql
from services.migrations.lint_parse import parse

TIMEOUT = "SET lock_timeout = '500ms';\n"

# As `prisma migrate dev` writes them.
PRISMA_ADD_REQUIRED = """\
-- AlterTable
ALTER TABLE "Ingredient" ADD COLUMN "expiresAt" TIMESTAMP(3) NOT NULL;
"""

PRISMA_NEW_MODEL = """\
-- CreateEnum
CREATE TYPE "Unit" AS ENUM ('G', 'KG', 'ML', 'L', 'PIECE');

-- CreateTable
CREATE TABLE "Category" (
    "id" SERIAL NOT NULL,
    "name" TEXT NOT NULL,
    "parentId" INTEGER,
    CONSTRAINT "Category_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "Category_name_key" ON "Category"("name");

-- AddForeignKey
ALTER TABLE "Category" ADD CONSTRAINT "Category_parentId_fkey" FOREIGN KEY ("parentId") REFERENCES "Category"("id") ON DELETE SET NULL ON UPDATE CASCADE;
"""  # noqa: E501

PRISMA_RELATION_ON_EXISTING = """\
-- AlterTable
ALTER TABLE "Ingredient" ADD COLUMN     "categoryId" INTEGER;

-- CreateIndex
CREATE UNIQUE INDEX "User_email_key" ON "User"("email");

-- AddForeignKey
ALTER TABLE "Ingredient" ADD CONSTRAINT "Ingredient_categoryId_fkey" FOREIGN KEY ("categoryId") REFERENCES "Category"("id") ON DELETE RESTRICT ON UPDATE CASCADE;
"""  # noqa: E501

PRISMA_DROP_WITH_WARNINGS = """\
/*
  Warnings:

  - You are about to drop the column `qty` on the `Ingredient` table. All the data in the column will be lost.
  - You are about to drop the `Legacy` table. If the table is not empty, all the data it contains will be lost.
  - Added the required column `quantity` to the `Ingredient` table without a default value. This is not possible if the table is not empty.

*/
-- DropForeignKey
ALTER TABLE "Legacy" DROP CONSTRAINT "Legacy_userId_fkey";

-- AlterTable
ALTER TABLE "Ingredient" DROP COLUMN "qty",
ADD COLUMN     "quantity" DECIMAL(65,30) NOT NULL,
ALTER COLUMN "name" SET DATA TYPE VARCHAR(200);

-- DropTable
DROP TABLE "Legacy";
"""  # noqa: E501

# The expand/contract sequence `release-console expand add-column` runs, as Prisma migrations: each
# step that must not share a transaction with the one before is its own file. Nothing blocking.
SAFE_EXPAND_CONTRACT = [
    ("1_expand", """\
SET lock_timeout = '500ms';
ALTER TABLE "Ingredient" ADD COLUMN "expiresAt" TIMESTAMP(3);
"""),
    ("2_index", 'CREATE INDEX CONCURRENTLY "Ingredient_expiresAt_idx" ON "Ingredient"("expiresAt");\n'),
    ("3_checks", """\
SET lock_timeout = '500ms';
ALTER TABLE "Ingredient" ADD CONSTRAINT "Ingredient_expiresAt_not_null" CHECK ("expiresAt" IS NOT NULL) NOT VALID;
ALTER TABLE "Ingredient" ADD CONSTRAINT "Ingredient_categoryId_fkey" FOREIGN KEY ("categoryId") REFERENCES "Category"("id") NOT VALID;
"""),  # noqa: E501
    ("4_validate", """\
SET lock_timeout = '500ms';
ALTER TABLE "Ingredient" VALIDATE CONSTRAINT "Ingredient_expiresAt_not_null";
ALTER TABLE "Ingredient" VALIDATE CONSTRAINT "Ingredient_categoryId_fkey";
"""),
    ("5_contract", """\
SET lock_timeout = '500ms';
ALTER TABLE "Ingredient" ALTER COLUMN "expiresAt" SET NOT NULL;
ALTER TABLE "Ingredient" DROP CONSTRAINT "Ingredient_expiresAt_not_null";
"""),
]


def found(sql: str) -> list[tuple[str, int, bool]]:
    return [(f.rule, f.line, f.blocking) for f in lint_sql(sql)]


def rules(sql: str) -> list[str]:
    return [f.rule for f in lint_sql(sql)]


def one(sql: str, rule: str) -> Finding:
    matching = [f for f in lint_sql(sql) if f.rule == rule]
    assert len(matching) == 1, lint_sql(sql)
    return matching[0]


# --- adding-not-null-without-default ---------------------------------------------------------


def test_adding_not_null_without_default_prisma() -> None:
    assert found(PRISMA_ADD_REQUIRED) == [
        ("missing-lock-timeout", 2, False),
        ("adding-not-null-without-default", 2, True),
    ]
    finding = one(PRISMA_ADD_REQUIRED, "adding-not-null-without-default")
    assert finding.statement == 'ALTER TABLE "Ingredient" ADD COLUMN "expiresAt" TIMESTAMP(3) NOT NULL'
    assert '"expiresAt"' in finding.message
    assert "release-console expand add-column" in finding.safer
    assert "NOT VALID" in finding.safer and "VALIDATE" in finding.safer


@pytest.mark.parametrize("column", [
    '"expiresAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP',
    '"active" BOOLEAN DEFAULT false NOT NULL',
    '"expiresAt" TIMESTAMP(3)',
    '"note" TEXT CHECK ("note" IS NOT NULL)',  # IS NOT NULL inside a check is no NOT NULL column
    '"n" BIGINT NOT NULL GENERATED ALWAYS AS IDENTITY',
])
def test_adding_column_nullable_or_with_default_is_fine(column: str) -> None:
    assert "adding-not-null-without-default" not in rules(TIMEOUT + f'ALTER TABLE "Ingredient" ADD COLUMN {column};')


def test_adding_not_null_column_to_table_created_in_same_migration_is_fine() -> None:
    sql = 'CREATE TABLE "Tag" ("id" SERIAL NOT NULL);\nALTER TABLE "Tag" ADD COLUMN "name" TEXT NOT NULL;'
    assert found(sql) == []


# --- setting-not-null ------------------------------------------------------------------------


def test_setting_not_null() -> None:
    sql = TIMEOUT + '-- AlterTable\nALTER TABLE "Ingredient" ALTER COLUMN "name" SET NOT NULL;'
    assert found(sql) == [("setting-not-null", 3, True)]
    finding = one(sql, "setting-not-null")
    assert "ACCESS EXCLUSIVE" in finding.message
    assert 'CHECK ("name" IS NOT NULL) NOT VALID' in finding.safer and "VALIDATE CONSTRAINT" in finding.safer


def test_setting_not_null_after_validated_check_is_fine() -> None:
    sql = TIMEOUT + (
        'ALTER TABLE "Ingredient" ADD CONSTRAINT "nn" CHECK (("name" IS NOT NULL)) NOT VALID;\n'
        'ALTER TABLE "Ingredient" VALIDATE CONSTRAINT "nn";\n'
        'ALTER TABLE "Ingredient" ALTER COLUMN "name" SET NOT NULL;\n'
    )
    # SET NOT NULL skips its scan; the VALIDATE in the ADD's transaction is flagged (see below).
    assert found(sql) == [("constraint-without-not-valid", 3, True)]


@pytest.mark.parametrize("before", [
    # not validated
    'ALTER TABLE "Ingredient" ADD CONSTRAINT "nn" CHECK ("name" IS NOT NULL) NOT VALID;',
    # another column
    'ALTER TABLE "Ingredient" ADD CONSTRAINT "nn" CHECK ("unit" IS NOT NULL) NOT VALID;\n'
    'ALTER TABLE "Ingredient" VALIDATE CONSTRAINT "nn";',
    # another table
    'ALTER TABLE "Recipe" ADD CONSTRAINT "nn" CHECK ("name" IS NOT NULL) NOT VALID;\n'
    'ALTER TABLE "Recipe" VALIDATE CONSTRAINT "nn";',
    # dropped again before SET NOT NULL
    'ALTER TABLE "Ingredient" ADD CONSTRAINT "nn" CHECK ("name" IS NOT NULL) NOT VALID;\n'
    'ALTER TABLE "Ingredient" VALIDATE CONSTRAINT "nn";\nALTER TABLE "Ingredient" DROP CONSTRAINT "nn";',
    # a check that proves more than the column is not null
    'ALTER TABLE "Ingredient" ADD CONSTRAINT "nn" CHECK ("name" IS NOT NULL OR "unit" = \'G\') NOT VALID;\n'
    'ALTER TABLE "Ingredient" VALIDATE CONSTRAINT "nn";',
])
def test_setting_not_null_without_a_valid_check_on_that_column_is_flagged(before: str) -> None:
    sql = TIMEOUT + before + '\nALTER TABLE "Ingredient" ALTER COLUMN "name" SET NOT NULL;'
    assert rules(sql).count("setting-not-null") == 1


def test_validated_check_carries_over_to_later_migrations() -> None:
    findings = lint_migrations([
        ("1_expand", TIMEOUT + 'ALTER TABLE "I" ADD CONSTRAINT "nn" CHECK ("name" IS NOT NULL) NOT VALID;'),
        ("2_validate", TIMEOUT + 'ALTER TABLE "I" VALIDATE CONSTRAINT "nn";'),
        ("3_contract", TIMEOUT + 'ALTER TABLE "I" ALTER COLUMN "name" SET NOT NULL;'),
    ])
    assert findings == []
    # Linted alone, the last one cannot know about the check.
    assert rules(TIMEOUT + 'ALTER TABLE "I" ALTER COLUMN "name" SET NOT NULL;') == ["setting-not-null"]


# --- create-index-non-concurrently -----------------------------------------------------------


def test_create_index_non_concurrently_on_existing_table() -> None:
    sql = TIMEOUT + '-- CreateIndex\nCREATE UNIQUE INDEX "User_email_key" ON "User"("email");'
    assert found(sql) == [("create-index-non-concurrently", 3, True)]
    finding = one(sql, "create-index-non-concurrently")
    assert "SHARE lock" in finding.message and "CREATE UNIQUE INDEX CONCURRENTLY" in finding.safer


@pytest.mark.parametrize("sql", [
    'CREATE INDEX "Ingredient_name_idx" ON "Ingredient"("name");',
    "create index on ingredient using btree (name);",
    "CREATE INDEX IF NOT EXISTS idx ON ONLY public.ingredient (name);",
])
def test_create_index_variants_are_flagged(sql: str) -> None:
    assert rules(TIMEOUT + sql) == ["create-index-non-concurrently"]


def test_create_index_concurrently_or_on_new_table_is_fine() -> None:
    assert found('CREATE INDEX CONCURRENTLY "i" ON "Ingredient"("name");') == []
    assert found(PRISMA_NEW_MODEL) == []


# --- changing-column-type --------------------------------------------------------------------


@pytest.mark.parametrize("action", ['ALTER COLUMN "price" SET DATA TYPE DECIMAL(10,2)', 'ALTER "price" TYPE numeric',
                                    'ALTER COLUMN "price" TYPE INTEGER USING ("price"::integer)'])
def test_changing_column_type(action: str) -> None:
    sql = TIMEOUT + f'ALTER TABLE "Ingredient" {action};'
    assert found(sql) == [("changing-column-type", 2, True)]
    assert "rewrites" in one(sql, "changing-column-type").message


def test_other_column_changes_are_fine() -> None:
    sql = TIMEOUT + ('ALTER TABLE "Ingredient" ALTER COLUMN "price" DROP NOT NULL, '
                     'ALTER COLUMN "price" SET DEFAULT 0, ALTER COLUMN "unit" DROP DEFAULT;')
    assert found(sql) == []


# --- dropping-column / dropping-table --------------------------------------------------------


def test_prisma_drop_migration() -> None:
    assert found(PRISMA_DROP_WITH_WARNINGS) == [
        ("missing-lock-timeout", 10, False),
        ("dropping-column", 13, True),
        ("adding-not-null-without-default", 13, True),
        ("changing-column-type", 13, True),
        ("dropping-table", 18, True),
    ]
    assert "later release" in one(PRISMA_DROP_WITH_WARNINGS, "dropping-column").safer
    assert "backup" in one(PRISMA_DROP_WITH_WARNINGS, "dropping-table").safer


def test_dropping_column_variants() -> None:
    assert rules(TIMEOUT + "alter table ingredient drop column if exists qty cascade;") == ["dropping-column"]
    assert rules(TIMEOUT + "ALTER TABLE ingredient DROP qty;") == ["dropping-column"]


def test_dropping_constraint_index_or_new_table_is_not_a_drop_finding() -> None:
    sql = TIMEOUT + ('ALTER TABLE "Ingredient" DROP CONSTRAINT "Ingredient_categoryId_fkey";\n'
                     'DROP INDEX "User_email_key";\n'
                     'CREATE TABLE "Tmp" ("id" INTEGER);\nDROP TABLE "Tmp";')
    assert found(sql) == []


def test_dropping_several_tables_names_the_existing_ones() -> None:
    sql = TIMEOUT + 'CREATE TABLE "Tmp" ("id" INTEGER);\nDROP TABLE IF EXISTS "Tmp", public."Legacy" CASCADE;'
    finding = one(sql, "dropping-table")
    assert (finding.line, finding.blocking) == (3, True)
    assert '"Legacy"' in finding.message and '"Tmp"' not in finding.message


# --- renaming-column / renaming-table --------------------------------------------------------


def test_renaming_column() -> None:
    sql = TIMEOUT + '-- AlterTable\nALTER TABLE "Ingredient" RENAME COLUMN "qty" TO "quantity";'
    assert found(sql) == [("renaming-column", 3, True)]
    finding = one(sql, "renaming-column")
    assert "release-console expand rename-column" in finding.safer and "trigger" in finding.safer


def test_renaming_table() -> None:
    sql = TIMEOUT + 'ALTER TABLE "Ingredient" RENAME TO "Ingredients";'
    assert found(sql) == [("renaming-table", 2, True)]
    assert '"Ingredients"' in one(sql, "renaming-table").message


def test_renaming_a_constraint_or_a_new_table_is_fine() -> None:
    sql = TIMEOUT + ('ALTER TABLE "Ingredient" RENAME CONSTRAINT "a" TO "b";\n'
                     'CREATE TABLE "Tmp" ("id" INTEGER);\nALTER TABLE "Tmp" RENAME TO "Tag";')
    assert found(sql) == []


# --- constraint-without-not-valid ------------------------------------------------------------


def test_foreign_key_on_existing_table() -> None:
    assert found(PRISMA_RELATION_ON_EXISTING) == [
        ("missing-lock-timeout", 2, False),
        ("create-index-non-concurrently", 5, True),
        ("constraint-without-not-valid", 8, True),
    ]
    finding = one(PRISMA_RELATION_ON_EXISTING, "constraint-without-not-valid")
    assert "SHARE ROW EXCLUSIVE" in finding.message and '"Category"' in finding.message
    assert "NOT VALID" in finding.safer and 'VALIDATE CONSTRAINT "Ingredient_categoryId_fkey"' in finding.safer


@pytest.mark.parametrize("action", [
    'ADD CONSTRAINT "qty_positive" CHECK ("qty" > 0)',
    'ADD CHECK ("qty" > 0)',
    'ADD FOREIGN KEY ("categoryId") REFERENCES "Category"("id")',
    'ADD COLUMN "categoryId" INTEGER REFERENCES "Category"("id")',
    'ADD COLUMN "qty" INTEGER CHECK ("qty" > 0)',
])
def test_constraints_without_not_valid_are_flagged(action: str) -> None:
    assert found(TIMEOUT + f'ALTER TABLE "Ingredient" {action};') == [("constraint-without-not-valid", 2, True)]


def test_constraints_not_valid_unique_or_on_new_tables_are_fine() -> None:
    sql = TIMEOUT + (
        'ALTER TABLE "Ingredient" ADD CONSTRAINT "qty_positive" CHECK ("qty" > 0) NOT VALID;\n'
        'CREATE TABLE "Tag" ("id" SERIAL NOT NULL, "recipeId" INTEGER REFERENCES "Recipe"("id"), '
        'CHECK ("id" > 0));\n'
        'ALTER TABLE "Tag" ADD CONSTRAINT "Tag_recipeId_fkey" FOREIGN KEY ("recipeId") REFERENCES "Recipe"("id");\n'
    )
    assert found(sql) == []


# --- missing-lock-timeout --------------------------------------------------------------------


def test_missing_lock_timeout_once_per_migration_at_first_locking_statement() -> None:
    sql = ('CREATE TYPE "Unit" AS ENUM (\'G\');\n'
           'ALTER TABLE "Ingredient" ADD COLUMN "unit" "Unit";\n'
           'ALTER TABLE "Ingredient" ADD COLUMN "note" TEXT;\n')
    assert found(sql) == [("missing-lock-timeout", 2, False)]
    finding = one(sql, "missing-lock-timeout")
    assert "SET lock_timeout" in finding.safer and "queue" in finding.message
    assert RULES["missing-lock-timeout"] is False


@pytest.mark.parametrize("setting", [
    "SET lock_timeout = '500ms';",
    "SET LOCAL lock_timeout TO '2s';",
    "set session lock_timeout=1000;",
    "SELECT set_config('lock_timeout', '1s', false);",
])
def test_lock_timeout_set_before_is_fine(setting: str) -> None:
    assert found(f'{setting}\nALTER TABLE "Ingredient" ADD COLUMN "note" TEXT;') == []


@pytest.mark.parametrize("sql", [
    'ALTER TABLE "Ingredient" ADD COLUMN "note" TEXT;\nSET lock_timeout = \'500ms\';',  # too late
    "SET lock_timeout = 0;\nALTER TABLE \"Ingredient\" ADD COLUMN \"note\" TEXT;",  # 0 disables it
    "SET lock_timeout = '500ms';\nRESET lock_timeout;\nALTER TABLE \"Ingredient\" ADD COLUMN \"note\" TEXT;",
    'DROP INDEX "User_email_key";',
    # a foreign key from a new table still locks the existing table it references
    'CREATE TABLE "Tag" ("id" INTEGER);\n'
    'ALTER TABLE "Tag" ADD CONSTRAINT "fk" FOREIGN KEY ("id") REFERENCES "User"("id");',
])
def test_lock_timeout_missing_cases(sql: str) -> None:
    assert rules(sql) == ["missing-lock-timeout"]


def test_no_lock_timeout_needed_without_locks_on_existing_tables() -> None:
    assert lint_migrations([
        ("1", 'CREATE TYPE "Unit" AS ENUM (\'G\');\nCREATE TABLE "Tag" ("id" INTEGER);\n'
              'CREATE INDEX "Tag_id_idx" ON "Tag"("id");\nSELECT 1;'),
        ("2", 'DROP INDEX CONCURRENTLY "old_idx";'),  # CONCURRENTLY: alone in its file (see below)
        ("3", 'CREATE INDEX CONCURRENTLY "i" ON "Ingredient"("name");'),
    ]) == []


def test_lock_timeout_is_per_migration() -> None:
    findings = lint_migrations([("1_a", TIMEOUT + 'ALTER TABLE "I" ADD COLUMN "a" TEXT;'),
                                ("2_b", 'ALTER TABLE "I" ADD COLUMN "b" TEXT;')])
    assert [(f.migration, f.rule, f.line) for f in findings] == [("2_b", "missing-lock-timeout", 1)]


# --- the safe sequence, migrations and empty input -------------------------------------------


def test_safe_expand_contract_sequence_has_no_findings() -> None:
    assert lint_migrations(SAFE_EXPAND_CONTRACT) == []


def test_empty_and_comment_only_files() -> None:
    assert lint_sql("") == []
    assert lint_sql("-- This is an empty migration.\n/* nothing */\n;\n") == []
    assert split_statements("  \n;;\n") == []


def test_a_table_created_earlier_in_the_same_deploy_is_new() -> None:
    later = 'CREATE INDEX "Tag_id_idx" ON "Tag"("id");\nALTER TABLE "Tag" ADD COLUMN "n" TEXT NOT NULL;'
    assert lint_migrations([("1_init", 'CREATE TABLE "Tag" ("id" INTEGER);'), ("2_index", later)]) == []
    # Linted without the migration that creates it, the table is an existing one.
    assert rules(later) == ["missing-lock-timeout", "create-index-non-concurrently", "adding-not-null-without-default"]


def test_lint_migrations_names_and_order() -> None:
    findings = lint_migrations([
        ("20240801120000_add_expiry", PRISMA_ADD_REQUIRED),
        *((f"20240802120000_safe_{name}", sql) for name, sql in SAFE_EXPAND_CONTRACT),
        ("20240803120000_rename", TIMEOUT + 'ALTER TABLE "Ingredient" RENAME COLUMN "qty" TO "quantity";'),
    ])
    assert [(f.migration, f.rule, f.line) for f in findings] == [
        ("20240801120000_add_expiry", "missing-lock-timeout", 2),
        ("20240801120000_add_expiry", "adding-not-null-without-default", 2),
        ("20240803120000_rename", "renaming-column", 2),
    ]
    assert all(f.migration == "" for f in lint_sql(PRISMA_ADD_REQUIRED))


def test_every_rule_has_its_blocking_flag() -> None:
    findings = lint_sql(PRISMA_DROP_WITH_WARNINGS + PRISMA_RELATION_ON_EXISTING)
    assert findings and all(f.blocking is RULES[f.rule] for f in findings)
    assert [rule for rule, blocking in RULES.items() if not blocking] == ["missing-lock-timeout"]


# --- tricky SQL ------------------------------------------------------------------------------


def test_keywords_in_comments_are_ignored() -> None:
    sql = TIMEOUT + ("-- DROP TABLE x;\n/* ALTER TABLE \"User\" DROP COLUMN \"a\"; /* nested; */ DROP TABLE y; */\n"
                     "SELECT 1; -- ALTER TABLE x RENAME TO y\n")
    assert found(sql) == []


def test_keywords_and_semicolons_in_string_literals_are_ignored() -> None:
    sql = TIMEOUT + ("INSERT INTO \"Note\" (\"body\") VALUES ('a; DROP TABLE \"User\"; ALTER TABLE x DROP COLUMN y'),"
                     " (E'it\\'s; DROP TABLE z'), ('O''Brien; RENAME TO');\n"
                     'ALTER TABLE "Ingredient" RENAME COLUMN "qty" TO "quantity";')
    assert found(sql) == [("renaming-column", 3, True)]


def test_dollar_quoted_function_bodies_are_ignored() -> None:
    sql = TIMEOUT + """\
CREATE OR REPLACE FUNCTION sync_qty() RETURNS trigger AS $$
BEGIN
  DROP TABLE "User";
  ALTER TABLE "Ingredient" DROP COLUMN "qty";
  RETURN NEW;
END;
$$ LANGUAGE plpgsql;
DO $body$ BEGIN ALTER TABLE x RENAME TO y; END $body$;
CREATE FUNCTION one() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN true THEN 1 END; SELECT 1; END;
ALTER TABLE "Ingredient" DROP COLUMN "qty";
"""
    assert found(sql) == [("dropping-column", 11, True)]


def test_quoted_identifiers_that_look_like_keywords() -> None:
    sql = TIMEOUT + 'ALTER TABLE "DROP TABLE;" ADD COLUMN "SET NOT NULL; RENAME TO" TEXT;'
    assert found(sql) == []
    finding = one(TIMEOUT + 'ALTER TABLE "we""ird" DROP COLUMN "a;b";', "dropping-column")
    assert '"we""ird"."a;b"' in finding.message


def test_lowercase_unquoted_and_schema_qualified_sql() -> None:
    sql = ("alter table public.ingredient add column expires_at timestamp not null;\n"
           "create unique index user_email_key on public.\"User\" (email);\n"
           "alter table ingredient alter column name set not null;\n")
    assert found(sql) == [
        ("missing-lock-timeout", 1, False),
        ("adding-not-null-without-default", 1, True),
        ("create-index-non-concurrently", 2, True),
        ("setting-not-null", 3, True),
    ]
    assert '"ingredient"."expires_at"' in one(sql, "adding-not-null-without-default").message
    # A schema-qualified table created here is known under its plain name too.
    assert found('CREATE TABLE public."Tag" ("id" INTEGER);\nCREATE INDEX "i" ON "Tag"("id");') == []


def test_multiple_actions_in_one_alter_table() -> None:
    sql = TIMEOUT + ('ALTER TABLE "Ingredient" ADD COLUMN "a" TEXT NOT NULL, ADD COLUMN "b" NUMERIC(10, 2) DEFAULT 0 '
                     'NOT NULL,\n  ALTER COLUMN "c" SET NOT NULL, DROP COLUMN "d",\n  ALTER COLUMN "e" TYPE TEXT;')
    assert found(sql) == [
        ("adding-not-null-without-default", 2, True),
        ("setting-not-null", 2, True),
        ("dropping-column", 2, True),
        ("changing-column-type", 2, True),
    ]
    assert '"a"' in lint_sql(sql)[0].message


def test_line_numbers_count_comment_and_literal_lines() -> None:
    sql = ("/* a\n block\n comment */\n-- one\n\n"
           "INSERT INTO t VALUES ('multi\nline\nstring');\n"
           "ALTER TABLE \"Ingredient\"\n  DROP COLUMN \"qty\";  ALTER TABLE a RENAME TO b;\n")
    assert found(sql) == [
        ("missing-lock-timeout", 9, False),
        ("dropping-column", 9, True),
        ("renaming-table", 10, True),
    ]


def test_statement_is_whitespace_collapsed_without_comments_and_cut() -> None:
    sql = TIMEOUT + 'ALTER TABLE "Ingredient" -- why\n    DROP COLUMN   "qty";'
    assert one(sql, "dropping-column").statement == 'ALTER TABLE "Ingredient" DROP COLUMN "qty"'
    long = TIMEOUT + 'ALTER TABLE "Ingredient" ' + ", ".join(f'DROP COLUMN "column_{i}"' for i in range(20)) + ";"
    statements = {f.statement for f in lint_sql(long)}
    assert len(statements) == 1 and all(len(s) == 100 and s.endswith("…") for s in statements)


def test_split_statements_keeps_executable_source() -> None:
    sql = "-- lead\nCREATE INDEX CONCURRENTLY i ON t (a); -- trailing\nSELECT ';' /* ; */ ;\nVACUUM t"
    assert [(s.line, s.text) for s in split_statements(sql)] == [
        (2, "CREATE INDEX CONCURRENTLY i ON t (a)"),
        (3, "SELECT ';' /* ; */"),
        (4, "VACUUM t"),
    ]


# --- misses of the regex engine (issue 16) ---------------------------------------------------


@pytest.mark.parametrize(("action", "kind"), [
    ('ADD CONSTRAINT "Ingredient_name_key" UNIQUE ("name")', "UNIQUE"),
    ('ADD UNIQUE NULLS NOT DISTINCT ("name", "unit")', "UNIQUE"),
    ('ADD PRIMARY KEY ("id")', "PRIMARY KEY"),
    ('ADD CONSTRAINT "Ingredient_pkey" PRIMARY KEY ("id")', "PRIMARY KEY"),
    ('ADD CONSTRAINT "no_overlap" EXCLUDE USING gist ("during" WITH &&)', "EXCLUDE"),
    ('ADD COLUMN "code" TEXT UNIQUE', "UNIQUE"),
])
def test_constraints_that_build_an_index(action: str, kind: str) -> None:
    sql = TIMEOUT + f'ALTER TABLE "Ingredient" {action};'
    assert found(sql) == [("constraint-builds-index", 2, True)]
    finding = one(sql, "constraint-builds-index")
    assert f"Adding a {kind} constraint" in finding.message and "ACCESS EXCLUSIVE" in finding.message
    if kind == "EXCLUDE":
        assert "no concurrent way" in finding.safer
    else:
        assert "CREATE UNIQUE INDEX CONCURRENTLY" in finding.safer and f"{kind} USING INDEX" in finding.safer


def test_index_constraints_using_an_index_or_on_a_new_table_are_fine() -> None:
    sql = TIMEOUT + ('ALTER TABLE "Ingredient" ADD CONSTRAINT "Ingredient_name_key" UNIQUE USING INDEX "i";\n'
                     'ALTER TABLE "Ingredient" ADD CONSTRAINT "Ingredient_pkey" PRIMARY KEY USING INDEX "p";\n'
                     'CREATE TABLE "Tag" ("id" INTEGER, "name" TEXT);\n'
                     'ALTER TABLE "Tag" ADD PRIMARY KEY ("id"), ADD CONSTRAINT "Tag_name_key" UNIQUE ("name");')
    assert found(sql) == []


@pytest.mark.parametrize(("column", "what"), [
    ('"seenAt" TIMESTAMPTZ DEFAULT clock_timestamp()', "DEFAULT clock_timestamp()"),
    ('"seenAt" TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()', "DEFAULT clock_timestamp()"),
    ('"ref" UUID NOT NULL DEFAULT gen_random_uuid()', "DEFAULT gen_random_uuid()"),
    ('"ref" TEXT DEFAULT md5(random()::text)', "DEFAULT random()"),  # md5 is immutable; random() is not
    ('"total" NUMERIC GENERATED ALWAYS AS ("price" * "qty") STORED', "STORED"),
    ('"n" BIGINT NOT NULL GENERATED ALWAYS AS IDENTITY', "AS IDENTITY"),
    ('"n" SERIAL NOT NULL', "SERIAL"),
    ('"n" bigserial', "BIGSERIAL"),
])
def test_added_columns_that_rewrite_the_table(column: str, what: str) -> None:
    sql = TIMEOUT + f'ALTER TABLE "Ingredient" ADD COLUMN {column};'
    # SERIAL NOT NULL has a default (nextval): the regex engine called it adding-not-null-without-default.
    assert found(sql) == [("adding-column-rewrites-table", 2, True)]
    finding = one(sql, "adding-column-rewrites-table")
    assert what in finding.message and "rewrites the whole table" in finding.message
    assert "backfill" in finding.safer


@pytest.mark.parametrize("column", [
    '"seenAt" TIMESTAMPTZ NOT NULL DEFAULT now()',
    '"seenAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP',
    '"meta" JSONB NOT NULL DEFAULT \'{}\'::jsonb',
    '"qty" INTEGER NOT NULL DEFAULT 0',
    '"total" NUMERIC GENERATED ALWAYS AS ("price" * "qty") VIRTUAL',  # PostgreSQL 18: computed on read
])
def test_constant_stable_or_virtual_values_do_not_rewrite(column: str) -> None:
    assert found(TIMEOUT + f'ALTER TABLE "Ingredient" ADD COLUMN {column};') == []


def test_rewriting_columns_on_a_new_table_are_fine() -> None:
    assert found('CREATE TABLE "Tag" ("id" SERIAL NOT NULL);\n'
                 'ALTER TABLE "Tag" ADD COLUMN "at" TIMESTAMPTZ DEFAULT clock_timestamp();') == []


# --- transaction-aware: a Prisma migration is one transaction --------------------------------


def test_the_safe_sequence_in_one_file_fails_and_holds_the_lock() -> None:
    one_file = "".join(sql for _, sql in SAFE_EXPAND_CONTRACT)
    assert found(one_file) == [
        ("concurrently-in-transaction", 3, True),
        ("constraint-without-not-valid", 8, True),
        ("constraint-without-not-valid", 9, True),
    ]
    concurrently = one(one_file, "concurrently-in-transaction")
    assert "CREATE INDEX CONCURRENTLY cannot run inside a transaction block" in concurrently.message
    assert "alone in its own migration" in concurrently.safer
    validate = [f for f in lint_sql(one_file) if f.rule == "constraint-without-not-valid"][0]
    assert "same migration as the ADD ... NOT VALID on line 5" in validate.message
    assert "later migration" in validate.safer


@pytest.mark.parametrize("statement", [
    'DROP INDEX CONCURRENTLY "old_idx";',
    'REINDEX (CONCURRENTLY) INDEX "i";',
    'REINDEX INDEX CONCURRENTLY "i";',
    'ALTER TABLE "Sale" DETACH PARTITION "Sale_2023" CONCURRENTLY;',
])
def test_concurrently_beside_other_statements(statement: str) -> None:
    assert "concurrently-in-transaction" in rules(TIMEOUT + statement)
    assert "concurrently-in-transaction" not in rules(statement)


def test_validate_of_an_unnamed_not_valid_constraint_in_the_same_file() -> None:
    sql = TIMEOUT + ('ALTER TABLE "Ingredient" ADD CHECK ("qty" > 0) NOT VALID, '
                     'ADD FOREIGN KEY ("categoryId") REFERENCES "Category"("id") NOT VALID;\n'
                     'ALTER TABLE "Ingredient" VALIDATE CONSTRAINT "Ingredient_qty_check";\n'
                     'ALTER TABLE "Ingredient" VALIDATE CONSTRAINT "Ingredient_categoryId_fkey";\n'
                     'ALTER TABLE "Ingredient" VALIDATE CONSTRAINT "older_one";\n')
    assert found(sql) == [("constraint-without-not-valid", 3, True), ("constraint-without-not-valid", 4, True)]


# --- what the parser rejects -----------------------------------------------------------------


def test_a_statement_the_parser_rejects_is_a_finding_and_the_others_are_still_linted() -> None:
    sql = TIMEOUT + ('ALTER TABLE "Ingredient" ADD COLUMN;\n'
                     "-- next\n"
                     'ALTER TABLE "Ingredient" DROP COLUMN "qty";\n')
    findings = lint_migrations([("20240901000000_broken", sql)])
    assert [(f.migration, f.rule, f.line, f.blocking) for f in findings] == [
        ("20240901000000_broken", "unparseable-statement", 2, True),
        ("20240901000000_broken", "dropping-column", 4, True),
    ]
    assert findings[0].statement == 'ALTER TABLE "Ingredient" ADD COLUMN'
    assert 'syntax error at or near ";"' not in findings[0].message  # the statement is parsed alone
    assert "syntax error at end of input (line 2)" in findings[0].message


def test_an_error_on_a_later_line_of_a_statement_names_that_line() -> None:
    sql = 'SELECT 1;\nALTER TABLE "Ingredient"\n  ADD COLUMN "a" TEXT,\n  DROP COLUMN COLUMN;'
    finding = one(sql, "unparseable-statement")
    assert finding.line == 2 and "(line 4)" in finding.message


def test_an_unterminated_literal_is_reported_not_skipped() -> None:
    assert rules("SELECT 1;\nINSERT INTO t VALUES ('never closed);\nDROP TABLE \"User\";") == [
        "unparseable-statement"]


# --- parsed once ---------------------------------------------------------------------------


def test_a_file_is_parsed_once_per_text() -> None:
    sql = TIMEOUT + 'ALTER TABLE "Ingredient" DROP COLUMN "qty"; -- parsed once\n'
    assert parse(sql) is parse(sql)
    assert parse(sql + " ") is not parse(sql)
    assert lint_sql(sql) == lint_sql(sql) == lint_sql(sql, "")  # the cached trees are only read


def test_the_parser_is_imported_on_the_first_lint_only() -> None:
    """pglast takes a few hundred ms to import: the catalog (every command, the TUI) must not pay it."""
    probe = ("import sys, services.catalog, services.migrations.lint as lint\n"
             "print('pglast' in sys.modules, end=' ')\nlint.lint_sql('SELECT 1')\nprint('pglast' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.stdout.split() == ["False", "True"]


def test_non_ascii_text_before_a_statement_keeps_its_line_and_source() -> None:
    # libpg_query counts UTF-8 bytes: the statements are cut from the bytes, not the characters.
    sql = TIMEOUT + ("INSERT INTO \"Note\" VALUES ('crème brûlée, 日本');\n"
                     'ALTER TABLE "Ingrédient" DROP COLUMN "qté";')
    finding = one(sql, "dropping-column")
    assert (finding.line, finding.statement) == (3, 'ALTER TABLE "Ingrédient" DROP COLUMN "qté"')
    assert '"Ingrédient"."qté"' in finding.message
