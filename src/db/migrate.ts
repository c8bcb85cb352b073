import { promises as fs } from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import type { Kysely } from "kysely";
import { type Migration, type MigrationProvider, Migrator } from "kysely/migration";

const MIGRATIONS_DIR = fileURLToPath(new URL("../../migrations/", import.meta.url));

/** Loads migrations/*.ts in name order; Node runs them directly (type stripping). */
class FolderMigrationProvider implements MigrationProvider {
  async getMigrations(): Promise<Record<string, Migration>> {
    const names = (await fs.readdir(MIGRATIONS_DIR)).filter((n) => /^\d{4}_.+\.ts$/.test(n)).sort();
    const migrations: Record<string, Migration> = {};
    for (const name of names) {
      const module = (await import(
        pathToFileURL(path.join(MIGRATIONS_DIR, name)).href
      )) as Migration;
      migrations[name.replace(/\.ts$/, "")] = module;
    }
    return migrations;
  }
}

/**
 * Applies pending migrations. Kysely's migrator takes a lock in Postgres first, so several
 * replicas starting at once apply each migration exactly once.
 */
/** Migrations in migrations/ that the database has not run: it is older than this code. */
export async function pendingMigrations(db: Kysely<any>): Promise<string[]> {
  const migrator = new Migrator({ db, provider: new FolderMigrationProvider() });
  return (await migrator.getMigrations()).filter((m) => !m.executedAt).map((m) => m.name);
}

export async function migrateToLatest(db: Kysely<any>): Promise<string[]> {
  const migrator = new Migrator({ db, provider: new FolderMigrationProvider() });
  const { error, results } = await migrator.migrateToLatest();
  if (error) {
    const failed = results?.find((r) => r.status === "Error")?.migrationName ?? "unknown";
    throw new Error(`database migration ${failed} failed: ${(error as Error).message}`, {
      cause: error,
    });
  }
  return (results ?? []).filter((r) => r.status === "Success").map((r) => r.migrationName);
}
