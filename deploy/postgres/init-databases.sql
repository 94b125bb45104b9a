-- One database per service (the services also create theirs when it is missing). Run by psql at the
-- first start of an empty volume, and again if that start was cut short: it may run twice.
SELECT format('CREATE DATABASE %I', name)
FROM unnest(ARRAY['order', 'payment', 'stock']) AS name
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = name)
\gexec
