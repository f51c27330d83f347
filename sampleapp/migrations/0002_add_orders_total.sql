-- v2 of the sample shop adds a total to orders: a nullable column, which is safe to add to a
-- copy while it replicates from the live database.

-- +goose Up
ALTER TABLE orders ADD COLUMN total_cents bigint;

-- +goose Down
ALTER TABLE orders DROP COLUMN total_cents;
