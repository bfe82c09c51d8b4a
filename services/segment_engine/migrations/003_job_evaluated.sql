-- How many customers a job evaluated (``total``/``processed`` count the customers whose memberships changed).
ALTER TABLE evaluation_jobs ADD COLUMN evaluated bigint NOT NULL DEFAULT 0;
