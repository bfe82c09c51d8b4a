-- Keep a stored API answer exactly as it was sent (json keeps the text; jsonb reorders keys), so that a
-- retry with the same Idempotency-Key gets the same bytes back, not only the same JSON.
ALTER TABLE idempotency_keys ALTER COLUMN response TYPE json USING response::json;
