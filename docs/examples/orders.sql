-- A sample table for docs/tutorial.md: the orders the pipeline exports.
-- psql -d erp -f orders.sql (as a role that may create tables), then
-- GRANT SELECT ON orders TO outpost_reader (the tutorial makes that role).
CREATE TABLE orders (
    id       integer PRIMARY KEY,
    customer text NOT NULL,
    total    numeric(12, 2) NOT NULL,
    created  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO orders (id, customer, total, created) VALUES
    (1001, 'ACME GmbH', 1250.00, '2026-11-23 09:15:00+00'),
    (1002, 'Bolt & Nut, Ltd.', 89.90, '2026-11-23 14:02:00+00'),
    (1003, 'Café "Zur Post"', 12.50, '2026-11-23 17:45:30+00'),
    (1004, 'ACME GmbH', 40.00, '2026-11-24 08:00:00+00');
