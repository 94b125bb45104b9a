-- One database per service (SPEC §1). The services also create theirs when missing.
CREATE DATABASE "order";
CREATE DATABASE payment;
CREATE DATABASE stock;
