"""Payroll per department and office: an inner join on one of two shared keys, then a groupBy."""
from __future__ import annotations

import random

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

FAMILY = "employee_department_payroll"
SPEC = """\
Report payroll per department and office. Consider employees whose status, trimmed and
lower-cased, is 'active'. Match each employee to a department on dept_id only: departments also
have a location_id (the department's head office) which is not used; the office is the employee's
own location_id. Employees whose dept_id is null or matches no department are left out. Return one
row per (dept_name, location_id) with columns dept_name, location_id (the employee's), headcount
(number of employees, BIGINT), total_salary (sum of salary rounded to 2 decimals, null salaries
ignored, 0.0 when every salary in the group is null), max_salary (largest salary, null when every
salary in the group is null), in that order. dept_id is unique in departments; two departments may
share a dept_name, and then their employees are reported together."""
INPUTS = {
    "employees": "emp_id INT, dept_id INT, location_id INT, status STRING, salary DOUBLE",
    "departments": "dept_id INT, location_id INT, dept_name STRING",
}
KEYS = ["dept_name", "location_id"]
ORDERED = False

_DEPT_NAMES = ["Engineering", "Engineering", "Forschung & Entwicklung", "Ventes Île-de-France",
               "Support", "Finance"]


def generate(rng: random.Random, kind: str) -> dict[str, list[tuple]]:
    """Messy statuses, orphan and null dept ids, all-null salary groups, one huge department."""
    n_depts = {"typical": 6, "edge": 2, "adversarial": 5}[kind]
    departments = [(d, rng.randint(1, 4), _DEPT_NAMES[d - 1]) for d in range(1, n_depts + 1)]
    n = {"typical": 50, "edge": 5, "adversarial": 80}[kind]
    statuses = ["active", "active", " Active", "ACTIVE ", "terminated", "on_leave", None]
    employees = []
    for emp in range(1, n + 1):
        if kind == "adversarial":
            dept = rng.choice([1, 1, 1, 1, 2, None, 99])
        else:
            dept = rng.choice([*range(1, n_depts + 1), None, 99])
        salary = None if rng.random() < 0.15 else round(rng.uniform(30_000, 150_000), 2)
        employees.append((emp, dept, rng.randint(1, 4), rng.choice(statuses), salary))
    if kind == "edge":  # a group whose only salary is null
        employees.append((n + 1, 2, 9, "active", None))
    return {"employees": employees, "departments": departments}


def transform(employees: DataFrame, departments: DataFrame) -> DataFrame:
    active = employees.filter(F.lower(F.trim(F.col("status"))) == "active").alias("e")
    joined = active.join(
        departments.alias("d"), on=F.col("e.dept_id") == F.col("d.dept_id"), how="inner"
    )
    staffed = joined.select(
        F.col("d.dept_name").alias("dept_name"),
        F.col("e.location_id").alias("location_id"),
        F.col("e.emp_id").alias("emp_id"),
        F.col("e.salary").alias("salary"),
    )
    return staffed.groupBy("dept_name", "location_id").agg(
        F.count("emp_id").alias("headcount"),
        F.round(F.coalesce(F.sum("salary"), F.lit(0.0)), 2).alias("total_salary"),
        F.max("salary").alias("max_salary"),
    )
