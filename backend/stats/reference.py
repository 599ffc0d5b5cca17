"""Reference figures the statistics show beside the platform's own: census populations, the plan's targets,
and the factors behind "equivalents". Sources are returned with the figures (../shared/qingdao.md,
../shared/methodologies.md)."""

from decimal import Decimal

CENSUS_SOURCE = "青岛市第七次全国人口普查公报 (Qingdao Bureau of Statistics), resident population on 1 November 2020"
POPULATION_2020 = {
    "370202": 486_643,
    "370203": 1_096_879,
    "370213": 737_281,
    "370212": 502_370,
    "370211": 1_903_595,
    "370214": 1_109_606,
    "370215": 1_336_077,
    "370281": 987_820,
    "370283": 1_191_348,
    "370285": 720_103,
}
CITY_POPULATION_2020 = 10_071_722
assert sum(POPULATION_2020.values()) == CITY_POPULATION_2020

PLAN_SOURCE = "青岛市“十四五”应对气候变化规划 (February 2022)"
PLAN_TARGETS = [
    {"code": "green_travel_share", "target": "绿色出行比例 >= 70 % by 2025", "measured_by": "green_travel"},
    {"code": "new_energy_buses", "target": "New and replaced buses 100 % new-energy or clean-energy by 2025"},
    {"code": "transport_intensity", "target": "Operating vehicles' CO2 per transport turnover -4 % vs 2020"},
    {"code": "non_fossil_share", "target": "Non-fossil share of energy consumption >= 15 % by 2025"},
    {
        "code": "recycling",
        "target": "“Internet + recycling” and garbage sorting across the city",
        "measured_by": "recycling",
    },
    {"code": "district_co2_intensity", "target": "District CO2 per unit GDP -20.5 % to -22.5 % vs 2020 (per district)"},
]
# Which methodologies the platform measures each plan line with (trips and km for green travel).
PLAN_METHODOLOGIES = {
    "green_travel": ("bus_ride", "metro_ride", "bike_ride", "walk_steps"),
    "recycling": ("recycling", "kitchen_waste"),
}
PLAN_LABEL = (
    "Measured by the 青碳行 platform among its registered residents only: the platform's share, "
    "not the city's official statistic."
)

# Equivalents for /me/summary (grams CO2e -> something people picture). Rounded down in equivalent().
CAR_G_PER_KM = Decimal(178)
CAR_SOURCE = "UK DESNZ greenhouse-gas conversion factors: medium petrol car about 0.178 kg CO2e per vehicle-km"
TREE_G_PER_YEAR = Decimal(22_000)
TREE_SOURCE = "European Environment Agency: a mature tree absorbs about 22 kg CO2 a year"
