"""Deterministic demo business database: a highway service-area management system (bss_* tables).

Same seed, same rows, no network. Loading drops and recreates its own tables, so it can run again at will.
Some table and column comments are deliberately missing so that generated comments have work to do.
"""
from __future__ import annotations

import datetime as dt
import logging
import random
from decimal import Decimal

from psycopg2.extras import execute_values

from chalicelib.pipeline.db import connect

logger = logging.getLogger(__name__)

DEMO_BUSINESS_CONTEXT = "高速公路服务区管理系统"
DEMO_TABLES = [
    "public.bss_company",
    "public.bss_section_route",
    "public.bss_service_area",
    "public.bss_section_route_area_link",
    "public.bss_branch",
    "public.bss_service_area_mapper",
    "public.bss_business_day_data",
    "public.bss_car_day_count",
]

SEED = 20250701
START_DATE = dt.date(2023, 4, 1)
DAYS = 90

_AUDIT_COLUMNS = """
    version integer not null default 1,
    create_ts timestamp(3),
    created_by varchar(50),
    update_ts timestamp(3),
    updated_by varchar(50),
    delete_ts timestamp(3),
    deleted_by varchar(50)"""

_AUDIT_COMMENTS = {  # version is deliberately left without a comment
    "create_ts": "创建时间",
    "created_by": "创建人",
    "update_ts": "更新时间",
    "updated_by": "更新人",
    "delete_ts": "删除时间（软删除，非空表示已删除）",
    "deleted_by": "删除人",
}

_SCHEMA = f"""
create table bss_company (
    id varchar(32) primary key,{_AUDIT_COLUMNS},
    company_name varchar(255),
    company_no varchar(255) unique
);
create table bss_section_route (
    id varchar(32) primary key,{_AUDIT_COLUMNS},
    section_name varchar(255),
    route_name varchar(255),
    code varchar(255)
);
create table bss_service_area (
    id varchar(32) primary key,{_AUDIT_COLUMNS},
    service_area_name varchar(255),
    service_area_no varchar(255) unique,
    company_id varchar(32) references bss_company (id),
    service_position varchar(255),
    service_area_type varchar(50),
    service_state varchar(50)
);
create table bss_section_route_area_link (
    section_route_id varchar(32) not null references bss_section_route (id),
    service_area_id varchar(32) not null references bss_service_area (id),
    primary key (section_route_id, service_area_id)
);
create table bss_branch (
    id varchar(32) primary key,{_AUDIT_COLUMNS},
    branch_name varchar(255),
    branch_no varchar(255) unique,
    service_area_id varchar(32) references bss_service_area (id),
    company_id varchar(32) references bss_company (id),
    classify varchar(50),
    product_brand varchar(255),
    category varchar(50)
);
create table bss_service_area_mapper (
    id varchar(32) primary key,{_AUDIT_COLUMNS},
    service_name varchar(255),
    service_no varchar(255),
    service_area_id varchar(32) references bss_service_area (id),
    source_system_type varchar(50),
    source_type integer
);
create table bss_business_day_data (
    id varchar(32) primary key,{_AUDIT_COLUMNS},
    oper_date date,
    service_no varchar(255) references bss_service_area (service_area_no),
    service_name varchar(255),
    branch_no varchar(255) references bss_branch (branch_no),
    branch_name varchar(255),
    wx numeric(19,4),
    wx_order integer,
    zfb numeric(19,4),
    zfb_order integer,
    rmb numeric(19,4),
    rmb_order integer,
    xs numeric(19,4),
    xs_order integer,
    jd numeric(19,4),
    jd_order integer,
    order_sum integer,
    pay_sum numeric(19,4),
    source_type varchar(20)
);
create table bss_car_day_count (
    id varchar(32) primary key,{_AUDIT_COLUMNS},
    customer_count bigint,
    car_type varchar(100),
    count_date date,
    service_area_id varchar(32) references bss_service_area (id)
);
"""

_TABLE_COMMENTS = {  # bss_branch and bss_service_area_mapper deliberately have none
    "bss_company": "服务区管理公司信息",
    "bss_section_route": "高速公路路段与路线信息",
    "bss_service_area": "高速公路服务区基础信息",
    "bss_section_route_area_link": "路段路线与服务区关联关系",
    "bss_business_day_data": "服务区各档口每日营业数据（按支付方式统计金额与订单数）",
    "bss_car_day_count": "服务区每日车流量统计（按车辆类型）",
}

_COLUMN_COMMENTS = {
    "bss_company": {"id": "公司ID", "company_name": "公司名称", "company_no": "公司编码"},
    "bss_section_route": {"id": "路段路线ID", "section_name": "路段名称", "route_name": "路线名称",
                          "code": "路段编号"},
    "bss_service_area": {"id": "服务区ID", "service_area_name": "服务区名称", "service_area_no": "服务区编码",
                         "company_id": "所属管理公司ID", "service_area_type": "服务区类型",
                         "service_state": "服务区状态"},  # service_position deliberately missing
    "bss_section_route_area_link": {"section_route_id": "路段路线ID", "service_area_id": "服务区ID"},
    "bss_branch": {"branch_name": "档口名称", "branch_no": "档口编码", "classify": "品类"},
    "bss_service_area_mapper": {},
    "bss_business_day_data": {
        "id": "主键ID", "oper_date": "统计日期", "service_no": "服务区编码", "service_name": "服务区名称",
        "branch_no": "档口编码", "branch_name": "档口名称", "wx": "微信支付金额", "wx_order": "微信订单数",
        "zfb": "支付宝支付金额", "zfb_order": "支付宝订单数", "rmb": "现金支付金额", "rmb_order": "现金订单数",
        "xs": "行吧支付金额", "xs_order": "行吧订单数", "order_sum": "订单总数", "pay_sum": "支付总金额",
    },  # jd, jd_order (金豆支付) and source_type deliberately missing
    "bss_car_day_count": {"id": "主键ID", "customer_count": "车辆数量", "car_type": "车辆类别",
                          "count_date": "统计日期", "service_area_id": "服务区ID"},
}

_COMPANIES = [("赣中分公司", "H0001"), ("赣南分公司", "H0002"), ("赣西分公司", "H0003"),
              ("赣东北分公司", "H0004"), ("赣北分公司", "H0005")]
_ROUTES = [("昌九", "G70福银高速"), ("昌樟", "G60沪昆高速"), ("樟吉", "G45大广高速"), ("吉安", "G45大广高速"),
           ("赣州", "G35济广高速"), ("景婺", "G56杭瑞高速"), ("上饶", "G60沪昆高速"), ("萍乡", "G60沪昆高速")]
_AREAS = [  # name, company index, route indexes, longitude, latitude
    ("庐山服务区", 4, [0], 115.98, 29.43), ("九江服务区", 4, [0], 116.00, 29.70),
    ("南昌西服务区", 0, [1], 115.80, 28.66), ("樟树服务区", 0, [1, 2], 115.54, 28.06),
    ("新余服务区", 2, [2], 114.92, 27.82), ("吉安服务区", 0, [2, 3], 114.99, 27.11),
    ("井冈山服务区", 0, [3], 114.29, 26.75), ("赣州服务区", 1, [4], 114.94, 25.83),
    ("瑞金服务区", 1, [4], 116.03, 25.89), ("景德镇服务区", 3, [5], 117.18, 29.27),
    ("婺源服务区", 3, [5], 117.86, 29.25), ("上饶服务区", 3, [6], 117.94, 28.45),
    ("鹰潭服务区", 3, [6], 117.03, 28.24), ("萍乡服务区", 2, [7], 113.85, 27.62),
    ("宜春服务区", 2, [7], 114.39, 27.80),
]
_SHOPS = [("餐饮", "驿美餐饮", "中式快餐"), ("便利店", "驿购便利", "零售"), ("小吃", "赣味小吃", "小吃"),
          ("特产", "庐山特产", "特产"), ("整体租赁", "肯德基", "品牌餐饮")]
_CAR_TYPES = [("过境", 900), ("城际", 400), ("危化品", 25), ("其他", 120)]
_SOURCES = [("驿美", 70), ("驿购", 25), ("手工录入", 5)]


class _Ids:
    """Deterministic 32-hex ids drawn from the seeded generator."""

    def __init__(self, rng: random.Random):
        self.rng = rng

    def new(self) -> str:
        return f"{self.rng.getrandbits(128):032x}"


def _audit(rng: random.Random, day: dt.date, deleted: bool = False) -> tuple:
    created = dt.datetime.combine(day, dt.time(2, 0)) + dt.timedelta(days=1, minutes=rng.randrange(0, 240))
    updated = created + dt.timedelta(minutes=rng.randrange(0, 30)) if rng.random() < 0.3 else None
    delete_ts = created + dt.timedelta(days=rng.randrange(1, 5)) if deleted else None
    return (1, created, "admin", updated, "admin" if updated else None, delete_ts, "admin" if deleted else None)


def _weighted(rng: random.Random, options: list[tuple[str, int]]) -> str:
    return rng.choices([o[0] for o in options], weights=[o[1] for o in options])[0]


def _money(value: float) -> Decimal:
    return Decimal(f"{max(value, 0.0):.2f}")


def _build_rows(rng: random.Random) -> dict[str, tuple[list[str], list[tuple]]]:
    ids = _Ids(rng)
    base_day = START_DATE - dt.timedelta(days=400)
    rows: dict[str, tuple[list[str], list[tuple]]] = {}
    audit_cols = ["version", "create_ts", "created_by", "update_ts", "updated_by", "delete_ts", "deleted_by"]

    companies = [(ids.new(), *_audit(rng, base_day), name, no) for name, no in _COMPANIES]
    rows["bss_company"] = (["id", *audit_cols, "company_name", "company_no"], companies)

    routes = [(ids.new(), *_audit(rng, base_day), section, route, f"S{i + 1:04d}")
              for i, (section, route) in enumerate(_ROUTES)]
    rows["bss_section_route"] = (["id", *audit_cols, "section_name", "route_name", "code"], routes)

    areas = []
    links = []
    for i, (name, company, route_idx, lon, lat) in enumerate(_AREAS):
        state = "开放" if i not in (6, 13) else ("关闭" if i == 6 else "上传数据")
        area_type = "信息化服务区" if i % 3 else "智能化服务区"
        area_id = ids.new()
        areas.append((area_id, *_audit(rng, base_day), name, f"{1001 + i}", companies[company][0],
                      f"{lon:.6f},{lat:.6f}", area_type, state))
        links += [(routes[r][0], area_id) for r in route_idx]
    rows["bss_service_area"] = (["id", *audit_cols, "service_area_name", "service_area_no", "company_id",
                                 "service_position", "service_area_type", "service_state"], areas)
    rows["bss_section_route_area_link"] = (["section_route_id", "service_area_id"], links)

    branches = []
    for area, (_, company, *_rest) in zip(areas, _AREAS, strict=True):
        shop_count = 3 + (int(area[9]) % 3)  # 3..5 shops per area
        for j in range(shop_count):
            classify, brand, category = _SHOPS[j]
            side = "北区" if j % 2 else "南区"
            branches.append((ids.new(), *_audit(rng, base_day), f"{area[8]}{side}{brand}",
                             f"{area[9]}{j + 1:02d}", area[0], companies[company][0], classify, brand, category))
    rows["bss_branch"] = (["id", *audit_cols, "branch_name", "branch_no", "service_area_id", "company_id",
                           "classify", "product_brand", "category"], branches)

    mappers = []
    for area in areas:
        mappers.append((ids.new(), *_audit(rng, base_day), area[8], area[9], area[0], "驿美", 1))
        if int(area[9]) % 2 == 0:
            mappers.append((ids.new(), *_audit(rng, base_day), area[8].replace("服务区", ""),
                            f"YG{area[9]}", area[0], "驿购", 2))
    rows["bss_service_area_mapper"] = (["id", *audit_cols, "service_name", "service_no", "service_area_id",
                                        "source_system_type", "source_type"], mappers)

    area_by_id = {a[0]: a for a in areas}
    business = []
    cars = []
    for day_index in range(DAYS):
        day = START_DATE + dt.timedelta(days=day_index)
        weekend = 1.35 if day.weekday() >= 5 else 1.0
        holiday = 2.2 if dt.date(2023, 5, 1) <= day <= dt.date(2023, 5, 3) else 1.0
        for branch in branches:
            area = area_by_id[branch[10]]
            if area[13] == "关闭" and day_index > 30:
                continue
            scale = weekend * holiday * (0.6 + 0.8 * rng.random())
            orders = {k: max(0, int(base * scale)) for k, base in
                      (("wx", 120), ("zfb", 40), ("rmb", 12), ("xs", 8), ("jd", 3))}
            amounts = {k: _money(n * rng.uniform(18, 42)) for k, n in orders.items()}
            deleted = rng.random() < 0.01
            business.append((
                ids.new(), *_audit(rng, day, deleted), day, area[9], area[8], branch[9], branch[8],
                amounts["wx"], orders["wx"], amounts["zfb"], orders["zfb"], amounts["rmb"], orders["rmb"],
                amounts["xs"], orders["xs"], amounts["jd"], orders["jd"],
                sum(orders.values()), sum(amounts.values(), Decimal("0")), _weighted(rng, _SOURCES),
            ))
        for area in areas:
            for car_type, base in _CAR_TYPES:
                count = int(base * weekend * holiday * (0.5 + rng.random()))
                cars.append((ids.new(), *_audit(rng, day), count, car_type, day, area[0]))
    rows["bss_business_day_data"] = (["id", *audit_cols, "oper_date", "service_no", "service_name", "branch_no",
                                      "branch_name", "wx", "wx_order", "zfb", "zfb_order", "rmb", "rmb_order",
                                      "xs", "xs_order", "jd", "jd_order", "order_sum", "pay_sum", "source_type"],
                                     business)
    rows["bss_car_day_count"] = (["id", *audit_cols, "customer_count", "car_type", "count_date",
                                  "service_area_id"], cars)
    return rows


def load_demo_database(url: str) -> dict[str, int]:
    """(Re)create the demo tables in the database at `url`; returns rows per table. Deterministic."""
    rng = random.Random(SEED)
    data = _build_rows(rng)
    conn = connect(url, application_name="data_pipeline_demo_db")
    try:
        with conn, conn.cursor() as cur:
            for table in reversed(DEMO_TABLES):
                cur.execute(f"drop table if exists {table} cascade")  # noqa: S608 - fixed names from DEMO_TABLES
            cur.execute(_SCHEMA)
            for table, comment in _TABLE_COMMENTS.items():
                cur.execute(f"comment on table {table} is %s", (comment,))
            for table, comments in _COLUMN_COMMENTS.items():
                merged = {**(_AUDIT_COMMENTS if table != "bss_section_route_area_link" else {}), **comments}
                for column, comment in merged.items():
                    cur.execute(f"comment on column {table}.{column} is %s", (comment,))
            for table in (t.split(".", 1)[1] for t in DEMO_TABLES):
                columns, values = data[table]
                execute_values(cur, f"insert into {table} ({', '.join(columns)}) values %s",  # noqa: S608
                               values, page_size=2000)
            for table in DEMO_TABLES:
                cur.execute(f"analyze {table}")
    finally:
        conn.close()
    counts = {table: len(data[table.split(".", 1)[1]][1]) for table in DEMO_TABLES}
    logger.info("demo database loaded", extra={"rows": counts})
    return counts
