"""Categories and Chinese text templates for simulated reports.

Each category carries the hub taxonomy code it represents, the codes the two
human sources would use for it (the four platforms' own event category and the
12345 hotline classification, both ones ``deploy/categories.yaml`` maps to that
taxonomy code) and several wordings per source: grid workers write short formal
notes, callers describe the problem in their own words, often with a vague address.  The
templates are deliberately varied so that text similarity in fusion is tested
on paraphrases, not copies.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Category:
    """One kind of simulated incident and how each source labels it.

    ``taxonomy`` is the hub's code for it (``deploy/categories.yaml``): the four-platforms
    ``fp_code``/``fp_name``, the 12345 ``hotline_name`` path, the sensor ``device_type`` and the
    wordings are all chosen so that ``streams.ingest.normalize`` maps them back to exactly that
    code (checked by tests/gridhub/simulate/test_sim_taxonomy.py).  Otherwise fusion, which only
    joins reports of compatible categories, would be scored on the simulator's labelling mistakes.

    ``fp_code`` is the provincial template's code.  The taxonomy is finer than that template:
    火情, 油烟 and 道路积水 have no code of their own there, so they carry the broader one the
    platforms file them under (0402 消防隐患, 0502 大气污染, 0403 防汛防台) and the ``fp_name``
    says what they are (the hub lets the name win over the code).  Likewise no wording leans to
    a neighbouring category more than to its own: household garbage, not rubble
    (construction_waste); spoiled food, not unlicensed trading (market_order).
    """

    key: str
    #: code of the hub's unified taxonomy (deploy/categories.yaml) this category represents
    taxonomy: str
    #: (platform after the 2021 reform, platform in older deployments)
    platform: tuple[str, str]
    fp_code: str
    fp_name: str
    hotline_code: str
    hotline_name: str
    titles: tuple[str, ...]
    grid_texts: tuple[str, ...]
    caller_texts: tuple[str, ...]
    #: device type whose alarms belong to this category, if any
    device_type: str | None = None
    urgency: tuple[float, float, float] = (0.85, 0.13, 0.02)  # 一般 / 紧急 / 特急


CATEGORIES: dict[str, Category] = {c.key: c for c in (
    Category(
        "street_vending", "street_vending", ("监管执法", "综合执法"), "0302", "占道经营", "010302", "市容环卫/占道经营",
        ("占道经营", "流动摊贩占道", "店外经营占道"),
        ("网格员巡查发现{place}有{n}处流动摊贩占用人行道经营，影响行人通行。",
         "{place}{shop}在店门外摆放货架、占道经营，已现场劝导未果。",
         "{when}{place}附近出现水果摊贩占道经营，人行道堵塞。",
         "{place}夜市摊位越线经营，占用机动车道约{m}米。"),
        ("市民来电反映：{vague}每天{when}有很多小摊贩摆摊，把人行道都占满了，希望管一管。",
         "来电人称{vague}有人在路边卖水果蔬菜，占道严重，行人只能走机动车道，很危险。",
         "反映{vague}的{shop}长期把东西摆到店外面，人都过不去，要求处理。",
         "市民反映{vague}早上摊贩占道经营，垃圾随地扔，请相关部门整治。"),
    ),
    Category(
        "garbage", "garbage", ("公共服务", "便民服务"), "0303", "垃圾乱堆", "010305", "市容环卫/垃圾清运",
        ("暴露垃圾", "垃圾堆放未清运", "生活垃圾乱扔"),
        ("{place}垃圾桶满溢，周边堆放生活垃圾约{m}平方米，未及时清运。",
         "巡查发现{place}有人乱扔生活垃圾，约{n}袋，需清运。",
         "{place}绿化带内暴露垃圾较多，已拍照上报。"),
        ("市民来电反映{vague}的垃圾好几天没人收了，臭气熏天，蚊蝇很多。",
         "来电称{vague}有人天天把垃圾袋扔在路边，堆得像小山一样，希望尽快清理。",
         "反映{vague}垃圾箱旁边垃圾堆了一地，夏天味道很大，要求清运。"),
    ),
    Category(
        "noise", "noise", ("监管执法", "综合执法"), "0305", "噪声扰民", "020407", "环境保护/噪声污染",
        ("施工噪声扰民", "夜间施工", "商铺噪声扰民"),
        ("{place}工地夜间{hour}点后仍在施工，噪声扰民，群众反映强烈。",
         "{place}{shop}使用高音喇叭招揽顾客，噪声较大。",
         "接群众反映，{place}有夜间施工现象，网格员已核实。"),
        ("市民来电反映{vague}的工地晚上{hour}点多还在打桩，吵得根本睡不着，要求制止。",
         "来电人反映{vague}的{shop}天天放音乐，声音特别大，严重影响休息。",
         "反映{vague}附近工地半夜施工，噪音很大，家里老人小孩都睡不好。"),
    ),
    Category(
        "illegal_building", "illegal_construction", ("监管执法", "综合执法"), "0301", "违法建设", "040310",
        "城乡建设/违法建设",
        ("违章搭建", "私自搭建", "屋顶违建"),
        ("{place}有住户在屋顶搭建彩钢棚约{m}平方米，疑似违法建设。",
         "巡查发现{place}一楼住户私自扩建院墙、搭建阳光房。",
         "{place}有人正在新建违章建筑，已拍照取证。"),
        ("市民来电举报{vague}有人在楼顶搭了个棚子，好像是违章建筑，请去看看。",
         "来电人反映{vague}邻居私自把院子围起来盖房子，占用公共通道。",
         "举报{vague}有人在绿化带上搭建简易房，要求拆除。"),
    ),
    Category(
        "road_damage", "road_damage", ("公共服务", "便民服务"), "0601", "道路设施", "040501", "城乡建设/道路破损",
        ("道路破损", "路面坑洼", "人行道板松动"),
        ("{place}路面出现坑洞，直径约{m}0厘米，存在安全隐患。",
         "{place}人行道板松动破损{n}处，需维修。",
         "巡查发现{place}路面塌陷，已设置警示标志。"),
        ("市民来电反映{vague}马路上有个大坑，电瓶车经过很危险，已经有人摔倒了。",
         "来电称{vague}人行道的砖都翘起来了，下雨天一踩一脚泥水。",
         "反映{vague}路面坑坑洼洼好久了，希望尽快修补。"),
    ),
    Category(
        "manhole", "manhole", ("公共服务", "便民服务"), "0602", "井盖", "040502", "城乡建设/窨井盖",
        ("井盖缺失", "井盖破损", "井盖移位"),
        ("{place}窨井盖缺失，已临时设置围挡，需尽快补装。",
         "{place}雨水井盖破损下陷，存在安全隐患。",
         "巡查发现{place}井盖移位，车辆经过有异响。"),
        ("市民来电反映{vague}有个井盖不见了，晚上路过很危险，赶紧处理一下。",
         "来电人称{vague}马路中间的井盖翘起来了，车子压上去哐哐响。",
         "反映{vague}的下水道盖子碎了，怕小孩掉下去。"),
        device_type="manhole", urgency=(0.6, 0.35, 0.05),
    ),
    Category(
        "street_light", "road_damage", ("公共服务", "便民服务"), "0601", "道路设施", "040503", "城乡建设/路灯照明",
        ("路灯不亮", "路灯故障"),
        ("{place}有{n}盏路灯不亮，夜间照明不足。",
         "巡查发现{place}路灯杆倾斜，灯具损坏。"),
        ("市民来电反映{vague}的路灯坏了好几天了，晚上黑漆漆的，不安全。",
         "来电称{vague}那一段路灯全都不亮，希望尽快修好。",
         "反映{vague}路灯白天亮晚上不亮，浪费电也不安全。"),
    ),
    Category(
        "sewage", "utilities", ("公共服务", "便民服务"), "0603", "供水供电", "040504", "城乡建设/排水设施",
        ("污水外溢", "下水道堵塞"),
        ("{place}污水井冒溢，污水流至路面约{m}米。",
         "{place}下水道堵塞，污水外溢，气味较大。"),
        ("市民来电反映{vague}下水道堵了，脏水都冒到马路上了，臭得不行。",
         "来电称{vague}化粪池满了往外溢，要求马上疏通。",
         "反映{vague}门口污水横流好几天，没人来管。"),
    ),
    Category(
        "cooking_fume", "cooking_fume", ("监管执法", "综合执法"), "0502", "油烟扰民", "020408", "环境保护/油烟",
        ("油烟扰民", "餐饮油烟直排"),
        ("{place}{shop}未安装油烟净化设施，油烟直排。",
         "接群众反映{place}烧烤店油烟扰民，网格员已核实属实。"),
        ("市民来电反映{vague}楼下的{shop}油烟直接往上排，家里窗户都不敢开。",
         "来电人反映{vague}有家烧烤店天天晚上烟熏火燎，要求整改。",
         "反映{vague}的饭店油烟很大，呛得人咳嗽。"),
    ),
    Category(
        "fire", "fire", ("应急管理", "综合执法"), "0402", "火情", "050601", "应急管理/火灾",
        ("火情", "居民楼起火", "疑似火情"),
        ("{place}{floor}楼冒出浓烟，疑似起火，已拨打119并组织疏散。",
         "网格员发现{place}有火情，现场浓烟较大，已通知物业和消防。",
         "{place}{floor}层住户家中起火，网格员正在协助疏散居民。"),
        ("市民来电称{vague}有栋楼冒黑烟，好像着火了！",
         "来电人反映{vague}{floor}楼窗户在冒烟，有烧焦味，请赶快派人。",
         "报告{vague}着火了，烟很大，楼里的人在往外跑。",
         "市民来电：{vague}好像有火灾，能看到火光，消防车还没到。",
         "来电称{vague}闻到很浓的烧焦味，楼道里全是烟。"),
        device_type="smoke", urgency=(0.0, 0.3, 0.7),
    ),
    Category(
        "electric_hazard", "electrical_fire", ("应急管理", "综合执法"), "0406", "用电安全", "050602", "应急管理/用电安全",
        ("电气线路老化", "用电安全隐患"),
        ("{place}配电箱线路老化发热，存在电气火灾隐患。",
         "巡查发现{place}电动车违规充电、私拉电线。"),
        ("市民来电反映{vague}楼道里有人私拉电线给电瓶车充电，很危险。",
         "来电称{vague}的电箱发烫还有焦味，担心起火。"),
        device_type="electric", urgency=(0.5, 0.45, 0.05),
    ),
    Category(
        "gas_leak", "gas_leak", ("应急管理", "综合执法"), "0404", "燃气安全", "040603", "城乡建设/燃气",
        ("燃气泄漏", "疑似燃气泄漏"),
        ("{place}{shop}后厨疑似燃气泄漏，已关闭总阀并疏散人员。",
         "网格员接报{place}有浓烈燃气味，已通知燃气公司。"),
        ("市民来电反映{vague}闻到很重的煤气味，怀疑漏气了，请赶紧派人。",
         "来电称{vague}的{shop}有燃气泄漏的味道，大家都不敢点火。",
         "反映{vague}楼道里一股天然气味，很担心。"),
        device_type="gas", urgency=(0.1, 0.5, 0.4),
    ),
    Category(
        "waterlogging", "waterlogging", ("应急管理", "便民服务"), "0403", "道路积水", "060604", "城乡建设/道路积水",
        ("道路积水", "内涝"),
        ("{place}下穿通道积水深约{n}0厘米，车辆无法通行，已设置警示。",
         "强降雨致{place}路段积水，已通知排水部门。"),
        ("市民来电反映{vague}积水很深，车子开不过去，已经有车熄火了。",
         "来电称{vague}涵洞里水都漫到膝盖了，赶紧去排水。",
         "反映{vague}下雨就淹，现在水已经进了店里。"),
        device_type="water_level", urgency=(0.4, 0.5, 0.1),
    ),
    Category(
        "neighbour_dispute", "dispute", ("综治工作", "综治工作"), "0101", "矛盾纠纷", "070101", "社会管理/邻里纠纷",
        ("邻里纠纷", "矛盾纠纷调解"),
        ("{place}两户居民因{cause}发生纠纷，网格员已介入调解。",
         "{place}邻里因{cause}产生矛盾，需村（社区）调解。"),
        ("市民来电反映{vague}楼上邻居{cause}，沟通多次无果，希望社区出面协调。",
         "来电人称与{vague}邻居因{cause}闹矛盾，请求调解。"),
    ),
    Category(
        "food_safety", "food_safety", ("监管执法", "市场监管"), "0201", "食品安全", "030201", "市场监管/食品安全",
        ("食品安全", "销售过期食品"),
        ("{place}{shop}疑似无证经营，后厨卫生条件差。",
         "巡查发现{place}有商贩销售过期食品。"),
        ("市民来电投诉{vague}的{shop}卖的东西吃了拉肚子，怀疑不干净。",
         "来电反映{vague}有家店卖过期变质的食品，要求查处。",
         "投诉{vague}{shop}后厨卫生太差，老鼠乱跑。"),
    ),
)}

#: Categories human reporters raise without any sensor (weights ~ observed 12345 mix).
HUMAN_CATEGORY_WEIGHTS: dict[str, float] = {
    "street_vending": 12, "garbage": 12, "noise": 14, "illegal_building": 6, "road_damage": 8, "manhole": 4,
    "street_light": 6, "sewage": 6, "cooking_fume": 7, "neighbour_dispute": 6, "food_safety": 5,
    "electric_hazard": 2, "gas_leak": 1, "waterlogging": 3, "fire": 1,
}

SHOPS = ("水果店", "早餐店", "烧烤店", "小吃店", "便利店", "五金店", "快餐店", "面馆", "奶茶店", "理发店", "棋牌室")
CAUSES = ("漏水", "噪音", "占用楼道堆放杂物", "停车位", "装修", "养狗")
WHEN = ("每天早上", "每天傍晚", "晚上", "今天上午", "最近一周", "周末", "中午")

#: Questions and thanks the hotline answers itself: (appealType, categoryName, categoryCode, title, text).
#: Every path resolves to the taxonomy code ``consultation`` (first segment 政策咨询 / 意见建议).
CONSULTATIONS = (
    ("咨询", "政策咨询/社会保险咨询", "020101", "咨询社保卡补办流程", "市民来电咨询社保卡丢失后如何补办，已告知可在{county}市民中心或线上办理。"),
    ("咨询", "政策咨询/居住证咨询", "020102", "咨询居住证办理", "来电人咨询居住证办理需要哪些材料，已答复。"),
    ("咨询", "政策咨询/公交咨询", "020103", "咨询公交线路", "市民咨询去{landmark}坐几路公交，已告知线路。"),
    ("咨询", "政策咨询/入学咨询", "020104", "咨询小学入学政策", "家长来电咨询{town}学区划分和入学报名时间，已按政策答复。"),
    ("咨询", "政策咨询/医保咨询", "020105", "咨询医保报销比例", "来电人咨询门诊医保报销比例，已解答。"),
    ("感谢", "意见建议/表扬感谢", "020199", "感谢社区工作人员", "市民来电感谢{town}工作人员及时帮忙解决了{cause}问题。"),
)

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰红建国建华志强志明海燕丹萍鑫斌浩宇晨欣怡子涵梓轩"


def person_name(rng: random.Random) -> str:
    return rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2))))


def caller_name(rng: random.Random) -> str:
    """How 12345 records callers: often just 张先生 / 李女士, sometimes the full name, sometimes anonymous."""
    r = rng.random()
    if r < 0.55:
        return rng.choice(SURNAMES) + rng.choice(("先生", "女士"))
    if r < 0.9:
        return person_name(rng)
    return "匿名"
