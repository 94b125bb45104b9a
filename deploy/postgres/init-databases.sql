-- One database per service (the services also create theirs when it is missing). Run by psql at the
-- first start on an empty volume; this repository's PostgreSQL image runs it again when that start
-- was cut short, so it may run twice.
SELECT format('CREATE DATABASE %I', name)
FROM unnest(ARRAY['order', 'payment', 'stock']) AS name
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = name)
\gexec
