-- One database per service. The services also create theirs when missing.
CREATE DATABASE "order";
CREATE DATABASE payment;
CREATE DATABASE stock;
