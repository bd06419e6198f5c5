-- A host-bound activation binds one node: each node of a cluster is activated on its own (online
-- or by file), and each counts against the key's activations at the vendor. A node serves a key
-- that needs activation only while it holds its own activation of it.
ALTER TABLE activations ADD COLUMN node text NOT NULL DEFAULT '';
ALTER TABLE activations DROP CONSTRAINT activations_pkey;
ALTER TABLE activations ADD PRIMARY KEY (node, key_id);
ALTER TABLE activation_requests ADD COLUMN node text NOT NULL DEFAULT '';
